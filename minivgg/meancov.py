"""The mean-covariance style loss (``--style-loss meancov``): the Wasserstein-2 distance between
the Gaussians that the generated and the style image's features make at a layer.

Read this after losses.py (it is one of its two style losses). crowsonkb's style-transfer-pytorch
uses it by default; the Gram loss of Gatys et al. stays ours.

Notation as in losses.py: a response F (N, C, H, W), per image the (C, M) matrix of M = H*W
feature vectors f_p. Their mean mu = (1/M) sum_p f_p, (C, 1), and covariance
C_x = (1/M) sum_p (f_p - mu)(f_p - mu)^T = F F^T / M - mu mu^T, (C, C); mu_s and C_s the style's
(blended over several styles from their first and second moments, see losses.style_statistics).
The squared 2-Wasserstein distance between N(mu_x, C_x) and N(mu_s, C_s) is

    W2^2 = ||mu_x - mu_s||^2 + tr(C_x + C_s - 2 (C_s^1/2 C_x C_s^1/2)^1/2),

the least mean squared distance by which the feature vectors must be moved to give the style's
statistics. The layer loss is E_l = W2^2 / C, averaged over the N images: per channel, so that
layers of 64 and of 512 channels weigh alike, as the Gram loss's 1/(4 C^2) does for it.

Regularisation. Both covariances get eps I added (eps = MEANCOV_EPS times the style's mean
variance per channel, tr(C_s)/C): the distance between two slightly widened Gaussians. It is still
0 when the statistics match, and the matrix under the root, B (C_x + eps I) B with
B = (C_s + eps I)^1/2, is positive definite (eigenvalues >= eps^2), so the root's derivative
1/(s_i + s_j) stays finite even where a deep layer has fewer positions than channels.

Gradient (derived on docs/style-control.md and checked there and in the tests). With
Y = B C_x B, S = Y^1/2: dtr(S) = tr(Y^-1/2 dY) / 2 (the sqrtm backward with gS = I), so
    dW2^2/dC_x = I - B Y^-1/2 B = I - T,       dW2^2/dmu_x = 2 (mu_x - mu_s),
T the linear map that carries N(0, C_x) onto N(0, C_s) at least cost. Through C_x and mu_x,
    dW2^2/df_p = (2/M) [ (mu_x - mu_s) + (I - T)(f_p - mu_x) ],
each feature vector is pulled towards its optimal-transport image T(f_p - mu_x) + mu_s.
"""
from typing import NamedTuple

import numpy as np

import miniautograd as ag

MEANCOV_EPS = 1e-3     # eps = MEANCOV_EPS * tr(C_s) / C, added to both covariances


class MeanCovTarget(NamedTuple):
    """The style's side of W2^2 at one layer, computed once (float64 except ``mean``).

    mean: mu_s (1, C, 1) in the features' dtype; root: B = (C_s + eps I)^1/2 (1, C, C);
    trace: tr(C_s + eps I), a float; eps: the float added to both covariances.
    """
    mean: object
    root: object
    trace: float
    eps: float


def meancov_target(mu, R):
    """MeanCovTarget from the style's mean mu (1, C, 1) and second moment R = G/M (1, C, C)."""
    xp = ag.get_array_module(mu, R)
    mu64 = mu.astype(np.float64)
    cov = R.astype(np.float64) - mu64 @ mu64.swapaxes(1, 2)      # (1, C, 1) @ (1, 1, C)
    C = cov.shape[1]
    mean_variance = float(xp.trace(cov, axis1=1, axis2=2).mean()) / C
    eps = max(MEANCOV_EPS * mean_variance, 1e-8)
    cov = cov + eps * xp.eye(C)
    root = ag.sqrtm_psd(ag.Tensor(cov)).data                         # (1, C, C)
    trace = float(xp.trace(cov, axis1=1, axis2=2).mean())
    return MeanCovTarget(mu, root, trace, eps)


def meancov_layer_loss(F, target):
    """E_l = W2^2 / C, averaged over the N images: a scalar Tensor of F's dtype.

    F: (N, C, H, W) Tensor; target: MeanCovTarget. The C x C part runs in float64 (see
    autograd/sqrtm.py, Precision); its gradient comes back to F in F's dtype.
    """
    N, C, H, W = F.shape
    mu = ag.mean(ag.reshape(F, (N, C, H * W)), axis=2, keepdims=True)   # (N, C, H*W) -> (N, C, 1)
    return meancov_moments_loss(mu, ag.gram(F) / float(H * W), target)


def meancov_moments_loss(mu, R, target):
    """E_l = W2^2 / C from the layer's moments alone: mu (N, C, 1) and R = G/M (N, C, C) Tensors
    of the features' dtype, C_x = R - mu mu^T. What the tiled objective (tiled.py) calls with
    moments accumulated tile by tile; meancov_layer_loss calls it with F's."""
    N, C, _ = R.shape
    xp = ag.get_array_module(R.data)
    cov = R - mu @ ag.transpose(mu, (0, 2, 1))                         # (N, C, C)
    eye = xp.eye(C)
    cov = ag.cast(cov, np.float64) + target.eps * eye                 # C_x + eps I, (N, C, C)
    Y = target.root @ cov @ target.root                            # B C_x B, (N, C, C)
    trace = ag.sum(cov * eye) + N * target.trace - 2.0 * ag.sum(ag.sqrtm_psd(Y) * eye)
    mean_term = ag.sum_squared_error(mu, xp.broadcast_to(target.mean, mu.shape))
    return (mean_term + ag.cast(trace, R.dtype)) / float(C * N)
