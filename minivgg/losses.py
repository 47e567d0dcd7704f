"""The losses of neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) and the objective.

Read this after vgg.py. It relies on three engine ops: ``ag.sum_squared_error`` (sum of squares),
``ag.gram`` (unnormalised G = F F^T) and ``ag.total_variation`` (summed squared neighbour
differences). Every normalisation of the paper is applied here, in plain arithmetic you can check.

Notation: N batch (1 in style transfer, but nothing below assumes it), C channels (the paper's
N_l), H height, W width, M = H*W positions (the paper's M_l). A layer's response F has shape
(N, C, H, W); per image it is the (C, M) matrix of the paper.

The three terms, each normalised so that it does not grow with the number of positions:
- content, at layer l:  L_c = 1/2 * sum (F - P)^2 / (C * M), averaged over the N images; P is the
  content image's response. The paper's 1/2 is kept; the division by the layer size is ours.
- style, at layer l:  E_l = 1/(4 C^2) * sum (G/M - A/M_s)^2, averaged over the N images, with G the
  Gram matrix of F and A that of the style image's response (M_s its positions). When both images
  have the same size this is the paper's E_l = 1/(4 C^2 M^2) * sum (G - A)^2 exactly; dividing each
  Gram matrix by its own M also lets a style image of another size (``--style-scale``) be compared.
  L_s = sum_l w_l E_l, with the layer weights w_l scaled to sum to 1 (the paper's w_l = 1/5).
- total variation of the image x itself:  L_tv = (S / 512)^2 * (sum of squared differences of
  vertical and horizontal neighbours) / (N * H * W), in the preprocessed 0-255 units, with S the
  longest side in pixels: the mean squared slope, measured as if the longest side were 512 px.
The objective is  alpha * L_c + beta * L_s + gamma * L_tv  (content_weight, style_weight,
tv_weight); several content layers are averaged. ``--style-loss meancov`` replaces E_l by the
Wasserstein-2 distance of the features' means and covariances (meancov.py), built from the same
blended moments (``style_statistics``).

What that buys, and what it does not: a layer response off by the same amount everywhere, a
texture tiled over a larger area, and (for L_tv) the same picture resampled to another size cost
the same at any size. The content and style terms are still *not* independent of the picture's
size, because they depend on VGG's responses and VGG's 3x3 filters and 2x2 pools are measured in
pixels: the same picture at 1024 px shows each layer details four times as large as at 256 px.
"""
import numpy as np

import miniautograd as ag

from .meancov import meancov_layer_loss, meancov_target


def content_loss(F, P):
    """L_c = 1/2 * sum (F - P)^2 / (N * C * H * W): a scalar Tensor.

    F: (N, C, H, W) Tensor, the generated image's response; P: array of the same shape, the content
    image's response (a constant). Summed, then divided by the element count; the 1/2 is included.
    So it does not grow with the layer's size; it still depends on the picture's size through F.
    """
    return ag.sum_squared_error(F, P) / (2.0 * F.size)


def normalized_gram(F):
    """G / M for a response F of shape (N, C, H, W): a (N, C, C) Tensor (array in, Tensor out).

    G = F F^T over the M = H*W positions; dividing by M makes it the mean of the products of two
    channels over the image, which does not grow with the number of positions.
    """
    N, C, H, W = F.shape
    return ag.gram(F) / float(H * W)


def style_layer_loss(F, A_hat):
    """E_l = 1/(4 C^2) * sum (G/M - A_hat)^2 / N: a scalar Tensor.

    F: (N, C, H, W) Tensor; A_hat: (N, C, C) array, the style target already divided by its own
    M_s (see ``style_targets``). Equals the paper's 1/(4 C^2 M^2) sum (G - A)^2 when M_s = M.
    """
    return gram_style_loss(normalized_gram(F), A_hat)


def gram_style_loss(G_hat, A_hat):
    """E_l = 1/(4 C^2) * sum (G_hat - A_hat)^2 / N from the normalised Gram matrix G_hat = G/M,
    a (N, C, C) Tensor: the style loss as a function of the layer's statistics alone, which the
    tiled objective (tiled.py) accumulates tile by tile. A_hat: (N, C, C) array."""
    N, C, _ = G_hat.shape
    if G_hat.shape != A_hat.shape:
        raise ValueError(f"style_layer_loss: the Gram matrix has shape {G_hat.shape} but the "
                         f"target has shape {A_hat.shape}; they must be equal")
    return ag.sum_squared_error(G_hat, A_hat) / (4.0 * C * C * N)


TV_REFERENCE_SIZE = 512   # px: L_tv measures slopes as if the longest side were this long


def tv_loss(x):
    """L_tv = (S / 512)^2 * (sum of squared neighbour differences) / (N * H * W): a scalar Tensor.

    x: (N, 3, H, W) image Tensor; S = max(H, W), the side ``--size`` sets; 512 is
    ``TV_REFERENCE_SIZE``. A step d between neighbours of an S-px image is a slope of d * S/512
    per pixel of a 512-px one, so L_tv is the mean squared slope at the reference size: the same
    picture resampled to any size costs the same (a difference per pixel alone would fall as
    1/S^2). At S = 512 it is the plain mean over pixels. Detail at the pixel scale is not
    resampled with the picture: noise of a given amplitude per pixel costs (S/512)^2 as much.
    The three colour channels are summed, not averaged.
    """
    N, C, H, W = x.shape
    size_factor = (max(H, W) / TV_REFERENCE_SIZE) ** 2     # 1 at the reference size
    return ag.total_variation(x) * (size_factor / float(N * H * W))


def layer_weights(layers, weights=None):
    """{layer: w_l} with the weights scaled to sum to 1; equal weights when ``weights`` is None.

    Raises ValueError when the counts differ or the weights are negative or sum to 0.
    """
    layers = list(layers)
    w = np.ones(len(layers)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(layers),):
        raise ValueError(f"layer_weights: {len(layers)} layers but {w.size} weights")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"layer_weights: weights must be finite, >= 0 and not all 0; "
                         f"got {list(w)}")
    return {name: float(v) for name, v in zip(layers, w / w.sum())}


def content_targets(net, x, layers):
    """{layer: P}: the content image's responses, as arrays. x: (1, 3, H, W) preprocessed array."""
    out = net(ag.Tensor(x), list(layers))
    return {name: out[name].data for name in layers}


def image_moments(net, image, layers):
    """{layer: (mu (1, C, 1), R (1, C, C))} arrays of one image, (1, 3, Hs, Ws): the channels' mean
    over positions and the normalised Gram matrix G/M, from one untiled forward."""
    out = net(ag.Tensor(image), list(layers))
    moments = {}
    for name in layers:
        F = out[name].data
        N, C, H, W = F.shape
        moments[name] = (F.reshape(N, C, H * W).mean(axis=2, keepdims=True),   # (1, C, 1)
                         normalized_gram(out[name]).data)                    # (1, C, C)
    return moments


def style_statistics(net, images, layers, *, blend=None, moments=image_moments):
    """{layer: (mu, R)}: the blended first and second moments of one or several style images.

    images: a list of (1, 3, Hs, Ws) preprocessed arrays (sizes may differ from each other and from
    the content); blend: one weight per image (scaled to sum to 1; equal if None). For each layer,
    mu = sum_s b_s mu_s, the channels' mean over positions, (1, C, 1), and R = sum_s b_s A_s / M_s,
    the normalised Gram matrix (the second moment), (1, C, C). Moments are what can be blended:
    a blended covariance is formed from them (``meancov_target``), not blended itself.
    moments: how one image's are computed, ``image_moments`` or tiled.tiled_moments's partial.
    """
    b = layer_weights(range(len(images)), blend)
    stats = {}
    for s, image in enumerate(images):
        found = moments(net, image, list(layers))
        for name in layers:
            mu, R = (b[s] * m for m in found[name])
            old = stats.get(name)
            stats[name] = (mu, R) if old is None else (old[0] + mu, old[1] + R)
    return stats


def style_targets(net, images, layers, *, blend=None, loss="gram", moments=image_moments):
    """{layer: target} of the style loss ``loss``: for "gram" A_hat = sum_s b_s A_s / M_s, the
    blended normalised Gram matrix (1, C, C); for "meancov" a ``MeanCovTarget``. See
    ``style_statistics`` for ``images``, ``blend`` and ``moments``."""
    stats = style_statistics(net, images, layers, blend=blend, moments=moments)
    if loss == "gram":
        return {name: R for name, (mu, R) in stats.items()}
    if loss == "meancov":
        return {name: meancov_target(mu, R) for name, (mu, R) in stats.items()}
    raise ValueError(f"style_targets: loss must be 'gram' or 'meancov', not {loss!r}")


STYLE_LOSSES = {"gram": style_layer_loss, "meancov": meancov_layer_loss}


class Objective:
    """The total loss  alpha * L_c + beta * L_s + gamma * L_tv  of an image, and its gradient.

    content: {layer: P}; style: {layer: A_hat} (from ``content_targets`` / ``style_targets``);
    style_layer_weights: {layer: w_l} summing to 1 (``layer_weights``); the three weights >= 0;
    style_loss: "gram" (``style_layer_loss``) or "meancov" (meancov.py), as the targets were made;
    layer_loss: a function (F, target) -> E_l used instead of that loss's own, for targets of
    another kind (guided.guided_layer_loss, with --style-masks).
    """

    def __init__(self, net, content, style, style_layer_weights, *, content_weight,
                 style_weight, tv_weight, style_loss="gram", layer_loss=None):
        self.net, self.content, self.style = net, dict(content), dict(style)
        self.style_loss = style_loss
        self.style_layer_loss = layer_loss or STYLE_LOSSES[style_loss]
        self.w_style = dict(style_layer_weights)
        self.alpha, self.beta, self.gamma = content_weight, style_weight, tv_weight
        self.layers = list(dict.fromkeys([*self.content, *self.style]))  # in order, no repeats

    def terms(self, x, out=None):
        """The weighted terms of a (1, 3, H, W) image Tensor: {"content", "style", "tv", "total"}.

        Each term is already multiplied by its weight, so total = content + style + tv.
        out: the net's responses to x if already computed (a dict with at least ``self.layers``).
        """
        out = self.net(x, self.layers) if out is None else out
        Lc = sum(content_loss(out[name], P) for name, P in self.content.items())
        Ls = sum(self.w_style[name] * self.style_layer_loss(out[name], A)
                 for name, A in self.style.items())
        t = {"content": self.alpha / max(len(self.content), 1) * Lc,
             "style": self.beta * Ls,
             "tv": self.gamma * tv_loss(x)}
        t["total"] = t["content"] + t["style"] + t["tv"]
        return t

    def value_and_grad(self, x):
        """(total as a float, dL/dx as an array of x's shape, {term: float}) for an image array x.

        The four numbers are copied to the host in one transfer (one GPU synchronisation).
        """
        xt = ag.Tensor(x, requires_grad=True)
        t = self.terms(xt)
        t["total"].backward()
        xp = ag.get_array_module(x)
        names = ("total", "content", "style", "tv")
        values = ag.to_cpu(xp.stack([xp.asarray(t[k].data) for k in names]))
        parts = {k: float(v) for k, v in zip(names, values)}
        return parts["total"], xt.grad, parts
