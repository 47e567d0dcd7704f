"""The objective and its gradient evaluated tile by tile: exact, in the memory of one tile.

Read this after losses.py and tiles.py (the grid, the margins, and why a tile's owned positions
are exact); docs/tiling.md derives it. Notation as in losses.py; a layer's response F (N, C, H, W),
M = H*W its positions, F_t the positions a tile t owns, so that the tiles' F_t partition F.

Every loss term is a function of sums over positions:
- content: 1/2 sum (F - P)^2 / (N C H W) is the sum over tiles of the same expression on F_t;
- style: the Gram loss depends on R = G/M = sum_t F_t F_t^T / M, the meancov loss on R and on
  mu = sum_t (sum of F_t over positions) / M: both *moments* add up over the tiles;
- total variation: computed on the whole image, which is held whole anyway.
So one evaluation is two passes over the tiles:
1. for each tile, a forward without a graph: add its owned positions' F_t F_t^T and sums to the
   moments (``tiled_moments``); then the style loss of the whole-image moments and its gradient
   with respect to them, gR and gmu, by losses.py's own code (``gram_style_loss``,
   ``meancov_moments_loss``);
2. for each tile, a forward with the graph, then the backward of the tile's surrogate
       S_t = alpha' * sum_l content_loss(F_t, P_t) * |F_t| / |F|
             + beta * sum_l w_l * ( <F_t F_t^T / M, gR> + <sum_p F_t / M, gmu> ),
   whose gradient with respect to F_t is dL/dF at the owned positions, and zero elsewhere (the
   crop's backward, ``Crop``). The window's input gradient is added into the whole image's.
The sum over tiles of the input gradients is the chain rule over every owned position of every
layer: dL/dx, the same as the untiled backward's, up to the order of the additions.
"""
import miniautograd as ag

from . import losses, tiles
from .meancov import meancov_moments_loss

MOMENT_LOSSES = {"gram": lambda mu, R, target: losses.gram_style_loss(R, target),
                 "meancov": meancov_moments_loss}


class Crop(ag.Function):
    """y = x[:, :, r0:r1, c0:c1] (a copy). Backward: gx is zero but for gy in that window: a
    loss on y seeds backpropagation only at the positions it keeps. Keeps only x's shape."""

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols

    def forward(self, x):
        self.x_shape = x.shape
        return x[:, :, slice(*self.rows), slice(*self.cols)].copy()

    def backward(self, gy):
        gx = ag.get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        gx[:, :, slice(*self.rows), slice(*self.cols)] = gy
        return (gx,)


def owned_span(start, end, window_start, length, stride, local_length):
    """(first, last + 1) of the local positions, at a layer of ``stride``, that a tile owning
    input pixels [start, end) of an axis of ``length`` owns in its window starting at
    ``window_start``: those u with u*stride in [start, end); the last tile owns to the end."""
    first = (start - window_start) // stride
    last = local_length if end == length else (end - window_start) // stride
    return first, last


def owned_slices(tile, size, strides, local_shape):
    """((r0, r1), (c0, c1)) of a tile's owned positions in a response of ``local_shape``
    (N, C, h, w) computed on its window; strides: the layer's (rows, columns) Reach strides."""
    (w0, _, v0, _), (h, w) = tile.window, local_shape[2:]
    return (owned_span(tile.top, tile.bottom, w0, size[0], strides[0], h),
            owned_span(tile.left, tile.right, v0, size[1], strides[1], w))


class TileRunner:
    """The network run on the windows of a Layout, giving the owned part of each layer."""

    def __init__(self, net, layers, layout):
        self.net, self.layers, self.layout = net, list(layers), layout
        reaches = [tiles.layer_reaches(net.layers, axis=a) for a in (0, 1)]
        self.strides = {name: (reaches[0][name].stride, reaches[1][name].stride)
                        for name in self.layers}

    def owned(self, tile, x, *, record=False):
        """(window Tensor, {layer: the owned F_t}, {layer: its global (rows, cols) offset}).
        x: the whole (N, 3, H, W) array; with ``record`` the window requires a gradient and
        each F_t is a Crop node, else plain arrays."""
        r0, r1, c0, c1 = tile.window
        xw = ag.Tensor(x[:, :, r0:r1, c0:c1], requires_grad=record)
        out = self.net(xw, self.layers)
        found, offsets = {}, {}
        for name in self.layers:
            (sr, sc), F = self.strides[name], out[name]
            rows, cols = owned_slices(tile, self.layout.size, (sr, sc), F.shape)
            found[name] = Crop(rows, cols)(F) if record else Crop(rows, cols).forward(F.data)
            offsets[name] = (r0 // sr + rows[0], c0 // sc + cols[0])
        return xw, found, offsets


def moment_sums(runner, image):
    """Pass 1: ({layer: (sum over owned positions of F_t (N, C, 1), of F_t F_t^T (N, C, C))},
    {layer: M}) over the tiles of ``runner`` (a TileRunner) on an (N, 3, H, W) array."""
    sums, count = {}, {name: 0 for name in runner.layers}
    for t in runner.layout.tiles:
        _, found, _ = runner.owned(t, image)
        for name, F in found.items():
            N, C, h, w = F.shape
            s = (F.reshape(N, C, h * w).sum(axis=2, keepdims=True),    # (N, C, 1)
                 ag.gram(ag.Tensor(F)).data)                            # (N, C, C)
            sums[name] = s if name not in sums else (sums[name][0] + s[0], sums[name][1] + s[1])
            count[name] += h * w
    return sums, count


def tiled_moments(net, image, layers, *, tile):
    """{layer: (mu (N, C, 1), R (N, C, C))} of a whole image from pass 1: the same as
    losses.image_moments, in the memory of one ``tile`` px tile. image: (N, 3, H, W) array."""
    grid = tiles.layout(net.layers, layers, image.shape[2:], tile)
    sums, count = moment_sums(TileRunner(net, layers, grid), image)
    return {name: (mu / count[name], R / count[name]) for name, (mu, R) in sums.items()}


def tiled_responses(net, image, layers, *, tile):
    """{layer: F} of a whole image assembled from its tiles' owned parts (the content targets):
    the same as net(image, layers), in the memory of one tile and the responses themselves."""
    grid = tiles.layout(net.layers, layers, image.shape[2:], tile)
    runner, pieces = TileRunner(net, layers, grid), {name: [] for name in layers}
    for t in grid.tiles:
        _, found, offsets = runner.owned(t, image)
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


class TiledObjective:
    """losses.Objective's value_and_grad, evaluated in two passes over ``tile`` px tiles.

    objective: a losses.Objective (its net, targets, weights and style loss are used as they
    are); tile: the tile side, a multiple of the deepest loss layer's stride (tiles.py).
    """

    def __init__(self, objective, *, tile):
        self.objective, self.tile = objective, int(tile)
        self.net, self.layers = objective.net, objective.layers
        self.style_moment_loss = MOMENT_LOSSES[objective.style_loss]

    def layout(self, size):
        """The tiles.Layout of an image of ``size`` (H, W)."""
        return tiles.layout(self.net.layers, self.layers, size, self.tile)

    def style_term(self, moments):
        """(beta * sum_l w_l E_l as a float, {layer: (gmu or None, gR)}) of whole-image moments:
        the style loss of losses.py / meancov.py and its gradient with respect to the moments."""
        o, grads, total = self.objective, {}, 0.0
        leaves = {name: tuple(ag.Tensor(m, requires_grad=True) for m in moments[name])
                  for name in o.style}
        for name, A in o.style.items():
            E = o.beta * o.w_style[name] * self.style_moment_loss(*leaves[name], A)
            E.backward()                              # each term on its own leaves
            total += E.item()
        for name, (mu, R) in leaves.items():
            grads[name] = (mu.grad, R.grad)
        return total, grads

    def surrogate(self, found, offsets, style_grads, counts):
        """S_t of one tile (module docstring): a scalar Tensor, and its content part as a Tensor."""
        o, content, style = self.objective, 0.0, 0.0
        for name, P in o.content.items():
            F = found[name]
            r, c = offsets[name]
            P_t = P[:, :, r:r + F.shape[2], c:c + F.shape[3]]
            content = content + losses.content_loss(F, P_t) * (F.size / P.size)
        content = content * (o.alpha / max(len(o.content), 1))
        for name, (gmu, gR) in style_grads.items():
            F, M = found[name], counts[name]
            N, C, h, w = F.shape
            part = ag.sum(ag.gram(F) * (gR / M))
            if gmu is not None:
                sums = ag.sum(ag.reshape(F, (N, C, h * w)), axis=2, keepdims=True)  # (N, C, 1)
                part = part + ag.sum(sums * (gmu / M))
            style = style + part
        return content + style, content

    def value_and_grad(self, x):
        """(total, dL/dx, {term: float}) for an image array x (N, 3, H, W), as Objective's."""
        o, grid = self.objective, self.layout(x.shape[2:])
        sums, counts = moment_sums(TileRunner(self.net, list(o.style), grid), x)
        style, style_grads = self.style_term({name: (mu / counts[name], R / counts[name])
                                              for name, (mu, R) in sums.items()})
        xt = ag.Tensor(x, requires_grad=True)
        tv = o.gamma * losses.tv_loss(xt)
        tv.backward()
        grad, content, runner = xt.grad, 0.0, TileRunner(self.net, self.layers, grid)
        for t in grid.tiles:                                    # pass 2
            xw, found, offsets = runner.owned(t, x, record=True)
            S, content_t = self.surrogate(found, offsets, style_grads, counts)
            S.backward()
            r0, r1, c0, c1 = t.window
            grad[:, :, r0:r1, c0:c1] += xw.grad
            content += float(ag.to_cpu(ag.as_tensor(content_t).data))
        parts = {"content": content, "style": style, "tv": tv.item()}
        parts["total"] = parts["content"] + parts["style"] + parts["tv"]
        return parts["total"], grad, {k: parts[k] for k in ("total", "content", "style", "tv")}
