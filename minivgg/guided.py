"""Guided Gram matrices (``--style-masks``): each style painted only where its mask is white.

Read this after losses.py and masks.py (which reads the masks and brings them to each layer's
resolution). Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
Neural Style Transfer" (CVPR 2017), section 4.1; the derivation is on docs/style-control.md.

Notation as in losses.py: a response F (N, C, H, W), per image the (C, M) matrix of M = H*W
feature vectors f_p. Style r (of R) has a mask m_r at the layer's resolution, (1, 1, H, W),
values in [0, 1]; its total weight W_r = sum_p m_rp > 0.

The guided moments of region r are the features' moments with every position weighted by m_rp:
    R_r = sum_p m_rp f_p f_p^T / W_r     (C, C),      mu_r = sum_p m_rp f_p / W_r     (C, 1).
So the mask enters the Gram matrix as F * sqrt(m) on both sides (or as F * m on one side), not as
F * m on both: G_r = (F sqrt(m)) (F sqrt(m))^T = sum_p m_p f_p f_p^T. Why: with weights m_p, R_r is
a weighted *mean* of the products f_p f_p^T, the quantity the plain loss compares (G/M is their
plain mean). A mask of uniform grey c then gives R_r = G/M whatever c, and two masks that share a
pixel by weights m and 1 - m give it to both styles in those proportions. With F * m on both
sides the products are weighted by m^2 but normalised by sum m: a grey mask of 0.5 would ask the
picture for features of twice the style's energy. On a binary mask (0 or 1) the two agree.
Dividing by W_r makes R_r independent of the region's area: a small region is styled as strongly
as a large one (its per-position pull grows as 1/W_r; with two half-image regions it is twice
that of a plain style loss on the whole image).

The layer loss is the sum over the styles of the loss of moments that ``--style-loss`` names,
    E_l = sum_r E(mu_r, R_r; target_r),
with target_r the style image r's own, from the whole style image (losses.style_targets of that
image alone): for "gram" 1/(4 C^2) ||R_r - A_r/M_r||^2, for "meancov" W2^2 of the weighted mean and
covariance. Pixels no mask covers (all m_rp = 0) get no style loss. --style-blend-weights has no
role: each style is matched on its own region.
"""
from typing import NamedTuple

import miniautograd as ag

from . import losses
from .meancov import meancov_moments_loss

MOMENT_LOSSES = {"gram": lambda mu, R, target: losses.gram_style_loss(R, target),
                 "meancov": meancov_moments_loss}


class WeightedGram(ag.Function):
    """G = sum_p m_p f_p f_p^T = (F * m) F^T per image: x (N, C, H, W) -> G (N, C, C); the
    weights m, a constant (N or 1, 1, H, W) array, are given to the constructor.

    Backward. dG = sum_p m_p (df_p f_p^T + f_p df_p^T), so with <gG, dG> summed:
        dL/df_p = m_p (gG + gG^T) f_p,   i.e.   gF = ((gG + gG^T) F) * m,
    (N, C, C) @ (N, C, H*W) -> (N, C, H*W), times m (., 1, H*W). Kept for backward: F (a view of
    x, no copy) and m; the product F * m lives only during forward. (Written as ag ops, the
    graph would keep an F * m per style, a whole response each.)
    """

    def __init__(self, weights):
        self.weights = weights

    def forward(self, x):
        N, C, H, W = x.shape
        F = x.reshape(N, C, H * W)                         # (N, C, H, W) -> (N, C, H*W)
        m = self.weights.reshape(-1, 1, H * W)             # (N or 1, 1, H, W) -> (., 1, H*W)
        if self.recording:
            self.F, self.m, self.x_shape = F, m, x.shape
        return (F * m) @ F.swapaxes(1, 2)                  # (N, C, H*W) @ (N, H*W, C)

    def backward(self, gG):
        gF = ((gG + gG.swapaxes(1, 2)) @ self.F) * self.m  # (N, C, C) @ (N, C, H*W), * m
        return (gF.reshape(self.x_shape),)                 # (N, C, H*W) -> (N, C, H, W)


def weighted_gram(x, weights):
    """sum_p m_p f_p f_p^T: (N, C, H, W) Tensor and constant (., 1, H, W) weights -> (N, C, C)."""
    return WeightedGram(weights)(x)


def total_weight(mask):
    """W_r = sum_p m_rp as a float, summed in float64 whatever the mask's dtype, so that the
    tiled objective's sum of the tiles' parts (tiled.py) is the same number up to rounding."""
    return float(mask.sum(dtype=ag.get_array_module(mask).float64))


def weighted_moments(F, mask, *, need_mean=True, total=None):
    """(mu_r (N, C, 1) or None, R_r (N, C, C)) Tensors: F's moments weighted by ``mask``
    (1, 1, H, W), each divided by ``total``, by default the mask's own total weight W_r (module
    docstring); tiled.py passes the whole layer's W_r with a tile's crop of the mask."""
    N, C, H, W = F.shape
    total = total_weight(mask) if total is None else total
    R = weighted_gram(F, mask) / total
    if not need_mean:
        return None, R
    column = mask.reshape(1, H * W, 1).astype(F.dtype)            # (1, 1, H, W) -> (1, H*W, 1)
    mu = ag.reshape(F, (N, C, H * W)) @ column / total           # (N, C, H*W) @ (1, H*W, 1)
    return mu, R


class GuidedTarget(NamedTuple):
    """One layer's guided style target: per style r its mask at the layer's resolution
    (1, 1, H, W), float32 on the run's device, and its target of ``loss`` ("gram": A_r/M_r
    (1, C, C); "meancov": a MeanCovTarget)."""
    masks: tuple
    targets: tuple
    loss: str


def guided_layer_loss(F, target):
    """E_l = sum_r E(mu_r, R_r; target_r) (module docstring): a scalar Tensor. F: (N, C, H, W)
    Tensor; target: GuidedTarget. A style whose mask is 0 everywhere at this layer adds 0."""
    if F.shape[2:] != target.masks[0].shape[2:]:
        raise ValueError(f"guided_layer_loss: the response is {F.shape[2:]} but the masks are "
                         f"{target.masks[0].shape[2:]}; make the masks at this image's size")
    need_mean, weights = target.loss == "meancov", [total_weight(m) for m in target.masks]
    moments = [weighted_moments(F, mask, need_mean=need_mean, total=W) if W > 0 else None
               for mask, W in zip(target.masks, weights)]
    return guided_moments_loss(moments, target)


def guided_moments_loss(moments, target):
    """E_l = sum_r E(mu_r, R_r; target_r) from each region's moments: [(mu_r or None, R_r), or
    None for a region of weight 0 (it adds 0)], one per mask of ``target`` (a GuidedTarget).
    The loss of guided_layer_loss, and of the tiled objective's whole-image moments (tiled.py)."""
    moment_loss, total = MOMENT_LOSSES[target.loss], 0.0
    for found, style_target in zip(moments, target.targets):
        if found is not None:
            total = total + moment_loss(*found, style_target)
    return total


def guided_targets(per_style, per_style_masks, *, loss):
    """{layer: GuidedTarget} from per_style, [{layer: target}] (one dict per style, from
    losses.style_targets of that style image alone) and per_style_masks, [{layer: mask}] from
    masks.layer_masks: the style targets of a run with --style-masks, at one image size."""
    return {name: GuidedTarget(tuple(m[name] for m in per_style_masks),
                               tuple(t[name] for t in per_style), loss)
            for name in per_style[0]}


def guided_style_targets(net, styles, per_style_masks, layers, *, loss, moments):
    """{layer: GuidedTarget}: each style image's own target (``losses.style_targets`` of that
    image alone, ``moments`` as there) with its masks. styles: (1, 3, Hs, Ws) arrays."""
    per_style = [losses.style_targets(net, [image], layers, loss=loss, moments=moments)
                 for image in styles]
    return guided_targets(per_style, per_style_masks, loss=loss)
