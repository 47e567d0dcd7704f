"""The geometry of tiled evaluation: receptive fields, margins and the tile grid, from net.layers.

Read this before tiled.py, which evaluates the objective tile by tile on the grid made here; the
derivation is written out on docs/tiling.md. Pure arithmetic on LayerSpecs: no arrays.

Reach. Along one axis, a layer's position u depends on the input pixels
    [u*s - before, u*s + s - 1 + after]
where s is the layer's stride in input pixels (the product of the strides above it) and
before/after its reach beyond its own cell of s pixels. The input itself has s = 1 and reach 0.
A layer of kernel k, stride t and padding p (on the top or left) reads its input's positions
u*t - p .. u*t - p + k - 1, so, with s' = s*t,
    before' = before + p*s,        after' = after + (k - p)*s - s'.
A 3x3 convolution (p = 1, t = 1) adds s on each side; a 2x2 pool of stride 2 (p = 0) adds
nothing: its window is exactly its new, doubled cell. Down to VGG-19's relu5_1 that gives a cell
of 16 px and 70 px of reach on each side (its receptive field is 16 + 2*70 = 156 px).

Tiles. The image is cut into tiles of ``tile`` x ``tile`` pixels (the last row and column
shorter), ``tile`` a multiple of ``stride``, the deepest loss layer's s. A tile [t0, t1) *owns*
the positions u of every loss layer with u*s in [t0, t1): each position of each layer is owned by
exactly one tile. The tile is run through the network on its *window*
    [t0 - margin_before, t1 + margin_after], clipped to the image,
with margin_before = the largest reach before of the loss layers, rounded up to a multiple of
``stride`` (so that every pool of the window sees the same 2x2 blocks as in the whole image), and
margin_after = the largest reach after. Every owned position's dependencies then lie inside the
window, or beyond the image's true border where the window has the network's own zero padding:
its value (and its derivative with respect to the window) is the whole image's, exactly.

Spans. The window is what the input needs; deeper layers need less. ``needed_spans`` gives, per
layer, the positions a tile's owned positions still depend on (the margins narrowing layer by
layer down to the owned positions of the deepest loss layer); tiled.py crops each layer's output
to its span, and ``work_overhead`` counts the convolutions' work that leaves.
"""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Reach:
    """One layer along one axis: position u depends on input pixels
    [u*stride - before, u*stride + stride - 1 + after]."""
    stride: int
    before: int
    after: int


def layer_reaches(layers, *, axis=0):
    """{name: Reach} of every layer of ``layers`` (LayerSpecs in network order) along ``axis``
    (0: rows, 1: columns), by the recurrence in the module docstring."""
    reach, found = Reach(1, 0, 0), {}
    for spec in layers:
        if spec.kind in ("conv", "pool"):
            k = spec.kernel[axis]                      # conv (KH, KW, C, O), pool (PH, PW)
            t, p = spec.stride[axis], spec.pad[2 * axis]
            s = reach.stride
            reach = Reach(s * t, reach.before + p * s, reach.after + (k - p) * s - s * t)
        found[spec.name] = reach
    return found


@dataclass(frozen=True)
class Margins:
    """What the tile grid needs from the loss layers along one axis, in input pixels."""
    stride: int      # the deepest loss layer's stride: tiles are multiples of it
    before: int      # top/left margin, rounded up to a multiple of stride
    after: int       # bottom/right margin


def margins(layers, loss_layers, *, axis=0):
    """The Margins of a tile grid serving ``loss_layers`` (names in ``layers``) along ``axis``."""
    reaches = layer_reaches(layers, axis=axis)
    chosen = [reaches[name] for name in loss_layers]
    stride = max(r.stride for r in chosen)
    before = max(r.before for r in chosen)
    return Margins(stride, math.ceil(before / stride) * stride, max(r.after for r in chosen))


@dataclass(frozen=True)
class Tile:
    """One tile: it owns rows [top, bottom) and columns [left, right); its window (what the
    network runs on) is rows [window[0], window[1]) and columns [window[2], window[3])."""
    top: int
    bottom: int
    left: int
    right: int
    window: tuple

    @property
    def window_shape(self):
        return (self.window[1] - self.window[0], self.window[3] - self.window[2])


def _spans(length, tile, margin):
    """[(t0, t1, w0, w1)] along one axis: owned [t0, t1) and window [w0, w1), both clipped."""
    return [(t0, min(t0 + tile, length), max(0, t0 - margin.before),
             min(length, t0 + tile + margin.after)) for t0 in range(0, length, tile)]


def tile_grid(size, tile, margin_rows, margin_cols):
    """[Tile] covering an image of ``size`` (H, W) in row-major order.

    tile: the side in pixels, a multiple of both margins' stride (ValueError otherwise)."""
    for m in (margin_rows, margin_cols):
        if tile < m.stride or tile % m.stride:
            raise ValueError(f"tile_grid: the tile ({tile} px) must be a multiple of {m.stride}")
    rows = _spans(size[0], tile, margin_rows)
    cols = _spans(size[1], tile, margin_cols)
    return [Tile(r0, r1, c0, c1, (w0, w1, v0, v1))
            for r0, r1, w0, w1 in rows for c0, c1, v0, v1 in cols]


@dataclass(frozen=True)
class Layout:
    """A tile grid and what explains it: the tiles, the margins, the overhead."""
    size: tuple
    tile: int
    margins: tuple       # (rows, columns) Margins
    tiles: tuple

    @property
    def grid(self):
        """(tile rows, tile columns)."""
        return (len({t.top for t in self.tiles}), len({t.left for t in self.tiles}))

    @property
    def largest_window(self):
        """(H, W) of the largest window: what the memory of one tile is planned for."""
        return max((t.window_shape for t in self.tiles), key=lambda hw: hw[0] * hw[1])

    @property
    def overhead(self):
        """Pixels the network runs on, summed over the windows, over the image's pixels."""
        computed = sum(h * w for h, w in (t.window_shape for t in self.tiles))
        return computed / (self.size[0] * self.size[1])


def layout(layers, loss_layers, size, tile):
    """The Layout of ``tile`` px tiles on an image of ``size`` (H, W) for ``loss_layers``."""
    m = (margins(layers, loss_layers, axis=0), margins(layers, loss_layers, axis=1))
    return Layout(tuple(size), tile, m, tuple(tile_grid(size, tile, *m)))


def layer_lengths(layers, length, *, axis=0):
    """{name: number of positions along ``axis``} of every layer of ``layers`` on an input of
    ``length`` pixels: (n + pad_before + pad_after - k) // t + 1 at each conv and pool."""
    n, found = length, {}
    for spec in layers:
        if spec.kind in ("conv", "pool"):
            n = _output_length(spec, axis, n)
        found[spec.name] = n
    return found


def needed_spans(layers, loss_layers, length, owned, *, axis=0):
    """{name: (a, b)}: the positions [a, b) of each layer, and of the input (``"input"``), that
    a tile owning input pixels ``owned`` = (t0, t1) of an axis of ``length`` must compute
    exactly: its owned positions of the loss layers and all they depend on, and no more.

    Walking back from the deepest loss layer, a conv or pool of kernel k, stride t and padding p
    takes output positions [a, b) from its input's [a*t - p, (b - 1)*t - p + k), clipped to the
    input's extent (beyond it is the network's own zero padding); a loss layer adds the
    positions u it owns, u*s in [t0, t1) for its stride s (the last tile owns to the end). The
    start is rounded down to a multiple of the next layer's stride, so that a cropped array still
    meets the same 2x2 pooling blocks as the whole image. Each span lies inside the tile's
    window, and the deeper the layer the narrower it is: cropping to it
    (tile_runner.TileRunner) skips the margin's pixels that no owned position needs any more."""
    upto = max(i for i, spec in enumerate(layers) if spec.name in loss_layers) + 1
    lengths = layer_lengths(layers[:upto], length, axis=axis)
    strides = layer_reaches(layers[:upto], axis=axis)
    found, span = {}, None
    for i in reversed(range(upto)):
        spec = layers[i]
        if spec.name in loss_layers:
            mine = _owned(owned, length, strides[spec.name].stride, lengths[spec.name])
            span = mine if span is None else (min(span[0], mine[0]), max(span[1], mine[1]))
        found[spec.name] = span
        n_in = lengths[layers[i - 1].name] if i else length
        if spec.kind in ("conv", "pool"):
            k, t, p = spec.kernel[axis], spec.stride[axis], spec.pad[2 * axis]
            a, b = max(0, span[0] * t - p), min(n_in, (span[1] - 1) * t - p + k)
            span = (a - a % t, b)
    found["input"] = span
    return found


def _owned(owned, length, stride, positions):
    """[u0, u1): the positions u of a layer of ``stride`` (and ``positions`` in all) with u*stride
    in ``owned`` = [t0, t1) of an axis of ``length`` input pixels; the last tile owns to the end
    (t0 and t1 are multiples of every loss layer's stride, but for t1 = length)."""
    t0, t1 = owned
    return t0 // stride, positions if t1 == length else t1 // stride


def owned_spans(layers, loss_layers, length, owned, *, axis=0):
    """{name: [u0, u1)}: the positions of each of ``loss_layers`` that a tile owning input pixels
    ``owned`` = (t0, t1) of an axis of ``length`` owns."""
    reaches, lengths = layer_reaches(layers, axis=axis), layer_lengths(layers, length, axis=axis)
    return {name: _owned(owned, length, reaches[name].stride, lengths[name])
            for name in loss_layers}


def work_overhead(layers, loss_layers, layout):
    """The convolutions' multiply-adds of one pass over the tiles of ``layout``, over those of
    the whole image: each tile runs each conv on the span of its input that it keeps
    (needed_spans), so the margins cost most at the shallow layers and little at the deep ones.
    A conv of kernel (KH, KW, C, O) costs KH*KW*C*O per output position."""
    upto = max(i for i, spec in enumerate(layers) if spec.name in loss_layers) + 1
    convs = [spec for spec in layers[:upto] if spec.kind == "conv"]
    whole = [layer_lengths(layers[:upto], n, axis=axis) for axis, n in enumerate(layout.size)]
    per_position = {spec.name: math.prod(spec.kernel) for spec in convs}
    untiled = sum(whole[0][c.name] * whole[1][c.name] * per_position[c.name] for c in convs)
    tiled = 0
    for t in layout.tiles:
        rows, cols = (needed_spans(layers, loss_layers, layout.size[axis], owned, axis=axis)
                      for axis, owned in ((0, (t.top, t.bottom)), (1, (t.left, t.right))))
        before = "input"
        for spec in layers[:upto]:
            if spec.kind == "conv":
                h, w = (_output_length(spec, axis, span[1] - span[0])
                        for axis, span in ((0, rows[before]), (1, cols[before])))
                tiled += h * w * per_position[spec.name]
            before = spec.name
    return tiled / untiled


def _output_length(spec, axis, n):
    """Positions along ``axis`` of a conv or pool's output on an input of ``n`` positions."""
    k, t = spec.kernel[axis], spec.stride[axis]
    return (n + spec.pad[2 * axis] + spec.pad[2 * axis + 1] - k) // t + 1
