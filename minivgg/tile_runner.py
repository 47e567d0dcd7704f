"""A tile's window run through the network: each layer cut to what the tile still needs.

Read this after tiles.py (the grid, the margins and the spans) and before tiled.py, which
evaluates the objective with it. ``Crop`` cuts a layer's output to a span (its backward puts
the gradient back in place, zeros elsewhere); ``SpanCrops`` applies it after every layer, as
VGG19's ``after``; ``TileRunner`` runs one tile's window and gives each loss layer's owned
positions: all at once with a graph for pass 2 (``owned``), or one layer at a time as they are
made, without one, for pass 1 (``visit_owned``). docs/tiling.md derives it.
"""
import miniautograd as ag

from . import tiles


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


def crop(h, rows, cols, *, record):
    """h (a Tensor) cut to local ``rows`` and ``cols`` (start, end): a Crop node when recording,
    else a Tensor on a copy."""
    return Crop(rows, cols)(h) if record else ag.Tensor(Crop(rows, cols).forward(h.data))


class SpanCrops:
    """VGG19's ``after``: each layer's output cut to its span (tiles.needed_spans), as it is made.

    ``origin`` follows, per axis, the global position of the current array's first element: a
    layer of stride t maps it to origin / t (the spans keep it a multiple of t), a crop moves it
    to the span's start. A span beyond what was computed is a planning error (ValueError)."""

    def __init__(self, spans, origin, *, record):
        self.spans, self.origin, self.record = spans, list(origin), record

    def __call__(self, spec, h):
        if spec.kind in ("conv", "pool"):
            self.origin = [o // t for o, t in zip(self.origin, spec.stride)]
        (a, b), (c, d) = self.spans[spec.name]
        (r, s), (n, m) = self.origin, h.shape[2:]
        if (a, c, b - a, d - c) == (r, s, n, m):
            return h
        if a < r or c < s or b > r + n or d > s + m:
            raise ValueError(f"TileRunner: {spec.name} needs positions {a}..{b} x {c}..{d}, "
                             f"beyond the {n} x {m} computed from ({r}, {s})")
        self.origin = [a, c]
        return crop(h, (a - r, b - r), (c - s, d - s), record=self.record)


class TileRunner:
    """The network run on the windows of a Layout, giving the owned part of each layer.

    Each layer's output is cropped, as soon as it is made, to the span the tile still needs
    (``SpanCrops``): the margins shrink layer by layer, from the input's window to the owned
    positions of the deepest loss layer, so the deep layers skip the border pixels that no owned
    position depends on."""

    def __init__(self, net, layers, layout):
        self.net, self.layers, self.layout = net, list(layers), layout

    def per_axis(self, find, tile):
        """{name: (rows, columns)} for ``tile`` from ``find(layers, loss layers, length, owned,
        axis=)``, a function of tiles.py giving {name: (start, end)} along one axis."""
        rows, cols = (find(self.net.layers, self.layers, self.layout.size[axis], owned, axis=axis)
                      for axis, owned in ((0, (tile.top, tile.bottom)),
                                          (1, (tile.left, tile.right))))
        return {name: (rows[name], cols[name]) for name in rows}

    def spans(self, tile):
        """tiles.needed_spans of ``tile`` on both axes; ValueError when its input span is not
        inside its planned window (the margins would be short: a planning error)."""
        spans = self.per_axis(tiles.needed_spans, tile)
        (r0, r1), (c0, c1) = spans["input"]
        w = tile.window
        if r0 < w[0] or r1 > w[1] or c0 < w[2] or c1 > w[3]:
            raise ValueError(f"TileRunner: the tile needs input rows {r0}..{r1}, columns "
                             f"{c0}..{c1}, outside its planned window {w}: the margins are short")
        return spans

    def visit_owned(self, tile, x, visit):
        """Pass 1's forward of ``tile`` on x (N, 3, H, W), without a graph: visit(layer, F_t,
        (row, col) offset) for each loss layer as soon as it is made, F_t a *view* of its owned
        positions that is gone once visit returns. Nothing is held for the losses, so the network
        writes its ReLUs over the convolutions' outputs: a window needs about half the memory of
        one whose forward records the graph (memory.forward_only_peaks), and can be larger."""
        spans, owned = self.spans(tile), self.per_axis(tiles.owned_spans, tile)
        (r0, r1), (c0, c1) = spans["input"]
        crops = SpanCrops(spans, (r0, c0), record=False)

        def after(spec, h):
            h = crops(spec, h)
            if spec.name in owned:
                rows, cols = in_span(owned[spec.name], spans[spec.name])
                visit(spec.name, h.data[:, :, slice(*rows), slice(*cols)],
                      (owned[spec.name][0][0], owned[spec.name][1][0]))
            return h
        deepest = max(self.layers, key=self.net.layer_names.index)
        self.net(x[:, :, r0:r1, c0:c1], [deepest], after=after)

    def owned(self, tile, x, *, record=False):
        """(input Tensor, its (r0, r1, c0, c1) in x, {layer: the owned F_t}, {layer: its global
        (row, col) offset}). x: the whole (N, 3, H, W) array; with ``record`` the input requires
        a gradient and the crops are Crop nodes, else the F_t are plain arrays."""
        spans = self.spans(tile)
        (r0, r1), (c0, c1) = spans["input"]
        xw = ag.Tensor(x[:, :, r0:r1, c0:c1], requires_grad=record)
        out = self.net(xw, self.layers, after=SpanCrops(spans, (r0, c0), record=record))
        owned = self.per_axis(tiles.owned_spans, tile)
        found = {}
        for name in self.layers:
            F = crop(out[name], *in_span(owned[name], spans[name]), record=record)
            found[name] = F if record else F.data
        return xw, (r0, r1, c0, c1), found, {name: (rows[0], cols[0])
                                             for name, (rows, cols) in owned.items()}


def in_span(owned, span):
    """A layer's owned positions ((u0, u1), (v0, v1)) as local (rows, columns) of its array,
    which holds its ``span`` ((a, b), (c, d)) from (a, c)."""
    ((u0, u1), (v0, v1)), ((a, _), (c, _)) = owned, span
    return (u0 - a, u1 - a), (v0 - c, v1 - c)
