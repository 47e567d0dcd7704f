"""The objective and its gradient evaluated tile by tile: exact, in the memory of one tile.

Read this after losses.py, tiles.py (the grid, the margins, and why a tile's owned positions
are exact) and tile_runner.py (a tile's window run through the network); docs/tiling.md derives
it. Notation as in losses.py; a layer's response F (N, C, H, W),
M = H*W its positions, F_t the positions a tile t owns, so that the tiles' F_t partition F.

Every loss term is a function of sums over positions:
- content: 1/2 sum (F - P)^2 / (N C H W) is the sum over tiles of the same expression on F_t;
- style: the Gram loss depends on R = G/M = sum_t F_t F_t^T / M, the meancov loss on R and on
  mu = sum_t (sum of F_t over positions) / M: both *moments* add up over the tiles;
- total variation: computed on the whole image, which is held whole anyway.
So one evaluation is two passes over the tiles:
1. for each tile, a forward without a graph: add its owned positions' F_t F_t^T and sums to the
   moments as each style layer is made (``moment_sums``), in tiles of its own, larger as it
   holds no graph (``moment_tile``); then the style loss of the whole-image moments and its
   gradient with respect to them, gR and gmu, by losses.py's own code (``gram_style_loss``,
   ``meancov_moments_loss``);
2. for each tile, a forward with the graph, then the backward of the tile's surrogate
       S_t = alpha' * sum_l content_loss(F_t, P_t) * |F_t| / |F|
             + beta * sum_l w_l * ( <F_t F_t^T / M, gR> + <sum_p F_t / M, gmu> ),
   whose gradient with respect to F_t is dL/dF at the owned positions, and zero elsewhere (the
   crop's backward, tile_runner.Crop). The window's input gradient is added into the whole
   image's.
The sum over tiles of the input gradients is the chain rule over every owned position of every
layer: dL/dx, the same as the untiled backward's, up to the order of the additions.

With --style-masks (guided.py) a style layer has one region per mask m_r (whole-image, at the
layer's resolution), and the moments are weighted: sum_t sum_p m_rp f_p f_p^T and sum_t sum_p
m_rp f_p, divided by W_r = sum_t sum_p m_rp, each tile's mask cropped to its owned positions as
F_t is (``owned_mask``). The plain loss is the case of one region of weight 1 (mask None). The
loss of the moments is guided.py's (``guided_moments_loss``), and the surrogate's style part is
summed over the regions, with that region's weighted moments of F_t.
"""
import miniautograd as ag
from miniautograd import backend

from . import guided, losses, tiles
from .tile_runner import TileRunner


def region_masks(target):
    """The regions of a style layer's ``target``: a guided.GuidedTarget's masks (1, 1, H, W),
    whole-image, or (None,) for a plain target: one region, every position of weight 1."""
    return target.masks if isinstance(target, guided.GuidedTarget) else (None,)


def owned_mask(mask, offset, shape):
    """A whole layer's mask (1, 1, H, W) cut to the owned F_t of ``shape`` (N, C, h, w) at the
    global ``offset`` (r, c), as the content target P_t is: a view. None stays None."""
    (r, c), (h, w) = offset, shape[2:]
    return None if mask is None else mask[:, :, r:r + h, c:c + w]


def region_moments(F, mask, total, *, need_mean=True):
    """(mu or None (N, C, 1), R (N, C, C)) Tensors: the sums over F's positions of f_p and of
    f_p f_p^T, each weighted by ``mask`` (None: weight 1), divided by ``total``."""
    if mask is not None:
        return guided.weighted_moments(F, mask, need_mean=need_mean, total=total)
    N, C, h, w = F.shape
    R = ag.gram(F) / total
    if not need_mean:
        return None, R
    return ag.sum(ag.reshape(F, (N, C, h * w)), axis=2, keepdims=True) / total, R  # (N, C, 1)


def band_moments(F, mask):
    """(sum_p m_p f_p (N, C, 1), sum_p m_p f_p f_p^T (N, C, C)) arrays of an array F (N, C, h, w),
    which may be a strided view, weighted by ``mask`` (1, 1, h, w), or None for weight 1.

    Summed over bands of rows, each copied contiguous on its own (at most the engine's work
    buffer, backend.default_chunk, in elements): no copy of the whole of F is made. For pass 1,
    which needs no graph; pass 2's surrogate takes its moments as Tensors (region_moments)."""
    xp = ag.get_array_module(F)
    N, C, h, w = F.shape
    step = max(1, backend.default_chunk(xp) // max(N * C * w, 1))
    mu, R = xp.zeros((N, C, 1), dtype=F.dtype), xp.zeros((N, C, C), dtype=F.dtype)
    for r in range(0, h, step):
        band = xp.ascontiguousarray(F[:, :, r:r + step]).reshape(N, C, -1)   # (N, C, rows*w)
        weighted = band if mask is None else band * mask[:, :, r:r + step].reshape(1, 1, -1)
        R += weighted @ band.swapaxes(1, 2)                 # (N, C, rows*w) @ (N, rows*w, C)
        mu += weighted.sum(axis=2, keepdims=True)
    return mu, R


def moment_sums(runner, image, masks=None):
    """Pass 1: ({layer: [per region (sum of m_p f_p (N, C, 1), sum of m_p f_p f_p^T (N, C, C))]},
    {layer: [per region W_r = sum of m_p]}) over the owned positions of the tiles of ``runner``
    (a TileRunner) on an (N, 3, H, W) array, each layer's added as soon as a tile makes it
    (TileRunner.visit_owned). masks: {layer: region_masks}; None: no masks."""
    masks = masks or {name: (None,) for name in runner.layers}
    sums = {name: [None] * len(masks[name]) for name in runner.layers}
    weights = {name: [0.0] * len(masks[name]) for name in runner.layers}

    def add(name, F, offset):
        for r, mask in enumerate(masks[name]):
            m = owned_mask(mask, offset, F.shape)
            s, old = band_moments(F, m), sums[name][r]
            sums[name][r] = s if old is None else (old[0] + s[0], old[1] + s[1])
            weights[name][r] += F.shape[2] * F.shape[3] if m is None else \
                guided.total_weight(m)
    for t in runner.layout.tiles:
        runner.visit_owned(t, image, add)
    return sums, weights


def tiled_moments(net, image, layers, *, tile):
    """{layer: (mu (N, C, 1), R (N, C, C))} of a whole image from pass 1: the same as
    losses.image_moments, in the memory of one ``tile`` px tile. image: (N, 3, H, W) array."""
    grid = tiles.layout(net.layers, layers, image.shape[2:], tile)
    sums, count = moment_sums(TileRunner(net, layers, grid), image)
    return {name: (mu / count[name][0], R / count[name][0]) for name, [(mu, R)] in sums.items()}


def tiled_responses(net, image, layers, *, tile):
    """{layer: F} of a whole image assembled from its tiles' owned parts (the content targets):
    the same as net(image, layers), in the memory of one tile and the responses themselves."""
    grid = tiles.layout(net.layers, layers, image.shape[2:], tile)
    runner, pieces = TileRunner(net, layers, grid), {name: [] for name in layers}
    for t in grid.tiles:
        _, _, found, offsets = runner.owned(t, image)
        for name in layers:
            pieces[name].append((offsets[name], found[name]))
    return {name: _assemble(parts) for name, parts in pieces.items()}


def _assemble(parts):
    """One (N, C, H, W) array from [((row, col) offset, piece)] that tile it exactly."""
    (_, first) = parts[0]
    H = max(r + p.shape[2] for (r, _), p in parts)
    W = max(c + p.shape[3] for (_, c), p in parts)
    xp = ag.get_array_module(first)
    whole = xp.empty((*first.shape[:2], H, W), dtype=first.dtype)
    for (r, c), p in parts:
        whole[:, :, r:r + p.shape[2], c:c + p.shape[3]] = p
    return whole


def whole_moments(sums, weights):
    """{layer: [per region (mu_r, R_r), or None where W_r = 0]}: pass 1's sums over W_r."""
    return {name: [None if W == 0 else (s[0] / W, s[1] / W)
                   for s, W in zip(sums[name], weights[name])] for name in sums}


class TiledObjective:
    """losses.Objective's value_and_grad, evaluated in two passes over ``tile`` px tiles.

    objective: a losses.Objective (its net, targets, weights and style loss are used as they
    are; guided.GuidedTarget style targets, from --style-masks, make it guided); tile: the tile
    side of pass 2, a multiple of the deepest loss layer's stride (tiles.py); moment_tile: pass
    1's, the same by default. Pass 1 records no graph, so its windows need about half the
    memory and can be larger: fewer tiles, less margin recomputed (tile_plan.py chooses both).
    Any two grids give the same value and gradient: each owns every position exactly once.
    """

    def __init__(self, objective, *, tile, moment_tile=None):
        self.objective, self.tile = objective, int(tile)
        self.moment_tile = self.tile if moment_tile is None else int(moment_tile)
        self.net, self.layers = objective.net, objective.layers
        self.regions = {name: region_masks(A) for name, A in objective.style.items()}

    def layout(self, size, *, moments=False):
        """The tiles.Layout of an image of ``size`` (H, W): pass 2's, or pass 1's (``moments``)."""
        tile = self.moment_tile if moments else self.tile
        return tiles.layout(self.net.layers, self.layers, size, tile)

    def moment_loss(self, name, moments):
        """E_l of style layer ``name`` from its regions' whole-image moments [(mu, R) or None]:
        guided.guided_moments_loss, or the plain loss of --style-loss on the one region."""
        target = self.objective.style[name]
        if isinstance(target, guided.GuidedTarget):
            return guided.guided_moments_loss(moments, target)
        return guided.MOMENT_LOSSES[self.objective.style_loss](*moments[0], target)

    def style_term(self, moments):
        """(beta * sum_l w_l E_l as a float, {layer: [per region (gmu or None, gR), or None]}) of
        the whole-image moments (``whole_moments``): the style loss and its gradient with
        respect to the moments, each layer's term backpropagated on its own leaves."""
        o, grads, total = self.objective, {}, 0.0
        for name in o.style:
            leaves = [None if m is None else tuple(ag.Tensor(a, requires_grad=True) for a in m)
                      for m in moments[name]]
            E = self.moment_loss(name, leaves)
            if isinstance(E, ag.Tensor):          # 0.0 when every region weighs 0 here
                E = o.beta * o.w_style[name] * E
                E.backward()
                total += E.item()
            grads[name] = [None if m is None else (m[0].grad, m[1].grad) for m in leaves]
        return total, grads

    def style_surrogate(self, found, offsets, style_grads, weights):
        """sum_l sum_r <R_tr, gR_r> + <mu_tr, gmu_r> of one tile (gR_r, gmu_r carry beta w_l):
        R_tr, mu_tr the moments of its F_t weighted by its crop of m_r, over the layer's W_r."""
        style = 0.0
        for name, grads in style_grads.items():
            F = found[name]
            for mask, g, W in zip(self.regions[name], grads, weights[name]):
                if g is None:
                    continue
                gmu, gR = g
                mu, R = region_moments(F, owned_mask(mask, offsets[name], F.shape), W,
                                       need_mean=gmu is not None)
                style = style + ag.sum(R * gR)
                if gmu is not None:
                    style = style + ag.sum(mu * gmu)
        return style

    def surrogate(self, found, offsets, style_grads, weights):
        """S_t of one tile (module docstring): a scalar Tensor, and its content part as a Tensor."""
        o, content = self.objective, 0.0
        for name, P in o.content.items():
            F = found[name]
            r, c = offsets[name]
            P_t = P[:, :, r:r + F.shape[2], c:c + F.shape[3]]
            content = content + losses.content_loss(F, P_t) * (F.size / P.size)
        content = content * (o.alpha / max(len(o.content), 1))
        return content + self.style_surrogate(found, offsets, style_grads, weights), content

    def value_and_grad(self, x):
        """(total, dL/dx, {term: float}) for an image array x (N, 3, H, W), as Objective's."""
        o, grid = self.objective, self.layout(x.shape[2:])
        sums, weights = moment_sums(TileRunner(self.net, list(o.style),
                                               self.layout(x.shape[2:], moments=True)),
                                    x, self.regions)
        style, style_grads = self.style_term(whole_moments(sums, weights))
        xt = ag.Tensor(x, requires_grad=True)
        tv = o.gamma * losses.tv_loss(xt)
        tv.backward()
        grad, content, runner = xt.grad, 0.0, TileRunner(self.net, self.layers, grid)
        for t in grid.tiles:                                    # pass 2
            xw, (r0, r1, c0, c1), found, offsets = runner.owned(t, x, record=True)
            S, content_t = self.surrogate(found, offsets, style_grads, weights)
            S.backward()
            grad[:, :, r0:r1, c0:c1] += xw.grad
            content += float(ag.to_cpu(ag.as_tensor(content_t).data))
        parts = {"content": content, "style": style, "tv": tv.item()}
        parts["total"] = parts["content"] + parts["style"] + parts["tv"]
        return parts["total"], grad, {k: parts[k] for k in ("total", "content", "style", "tv")}
