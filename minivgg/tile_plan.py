"""Planning a tiled run: its memory, and the largest tile that fits a budget (``--max-memory``).

Read this after plan.py and tiles.py. ``--max-memory`` budgets the whole process, so the plan
also counts what plan.py leaves out: the interpreter with its libraries and the run's own images
(``held_bytes``). A tiled iteration (tiled.py) holds, besides what the whole
run holds (the weights, Winograd's kernels, the losses' targets, the optimiser's state, all
planned on the whole image as plan.py does, and with --style-masks the masks at every style
layer's resolution, held whole: a tile weights its owned positions by views of them), the image's
gradient being summed, and at any moment either one tile's iteration or the total variation's:
    pass 2 = gradient + max(iteration of the largest window + its crops of the loss layers,
                            3 images),
the window's iteration being plan.py's own model of one untiled iteration on the window (which
counts, a little generously, the window's own TV and image gradient too), the crops the copies of
the owned positions tile_runner.Crop makes, and 3 images the TV's two differences and its gradient.
Pass 1 (the moments) runs before the gradient exists, a forward without a graph on its own,
larger tiles (``moment_tile``): pass 1 = its largest window's memory.forward_only_peaks. Then
    peak = held + weights + kernels + targets + optimiser state + masks + max(pass 1, pass 2).
The peak grows with the tile, so the largest tile under a budget is found by trying the tile
counts 1, 2, 3, ... in turn: first pass 2's, then, with that, pass 1's (``moment_tile_for``).
``choose_tile_and_history`` also decides whether L-BFGS's pairs are kept in float16
(--lbfgs-history-precision auto: when that lets the tiles grow).
"""
import math
from dataclasses import dataclass

from . import memory, plan, tiles
from .device import Device
from .errors import UserError
from .explain import format_bytes

RUNTIME_BYTES = 64 * 2 ** 20
"""The interpreter with NumPy, SciPy, Pillow, tqdm and minivgg imported: 51 MiB resident on
Linux (measured, bench/README.md "Tiled evaluation"), rounded up."""


def held_bytes(shapes, itemsize=4):
    """What a run holds besides plan.py's arrays: RUNTIME_BYTES and its images at their working
    shapes [(H, W) of the content, then of each style]: the content and the start image at the
    first shape, each style at its own, 3 channels each."""
    pixels = 2 * math.prod(shapes[0]) + sum(math.prod(shape) for shape in shapes[1:])
    return RUNTIME_BYTES + 3 * pixels * itemsize


@dataclass(frozen=True)
class TiledPlan:
    """The plan of one tiled iteration: the grids, the whole image's and the largest windows'."""
    layout: tiles.Layout          # pass 2's grid
    whole: plan.IterationPlan     # on the whole image: weights, kernels, targets, state
    window: plan.IterationPlan    # one untiled iteration on the largest window
    loss_layers: tuple            # the layers the losses read
    work: float                   # tiles.work_overhead: conv multiply-adds per pass over untiled
    moment_layout: tiles.Layout   # pass 1's grid (tiled.TiledObjective's moment_tile)
    moment_window_bytes: int      # pass 1 on its largest window: memory.forward_only_peaks
    moment_overhead: float        # tiles.work_overhead of pass 1's grid
    held_bytes: int = 0           # held_bytes: the interpreter and the run's images

    @property
    def flop(self):
        """FLOP of one tiled iteration: pass 2's forward and backward over its windows, pass 1's
        forward (half an untiled iteration's FLOP) over its own."""
        return self.whole.flop * (self.work + self.moment_overhead / 2)

    @property
    def crop_bytes(self):
        """The copies of the owned positions of the loss layers (at most the whole window's)."""
        return sum(la.out_bytes for la in self.window.layers if la.name in self.loss_layers)

    @property
    def iteration_bytes(self):
        image = self.whole.image_bytes
        return image + max(self.window.iteration_bytes + self.crop_bytes, 3 * image)

    @property
    def peak_bytes(self):
        w = self.whole
        return (self.held_bytes + w.weight_bytes + w.kernel_bytes + w.target_bytes
                + w.state_bytes + w.mask_bytes
                + max(self.iteration_bytes, self.moment_window_bytes))


def loss_layers(options):
    """The loss layers of plan.plan_iteration's keyword ``options``, in order, no repeats."""
    return list(dict.fromkeys([*options.get("style_layers", ()),
                               *options.get("content_layers", ())]))


def plan_tiled(net, size, tile, *, moment_tile=None, whole=None, held=0, **options):
    """The TiledPlan of ``tile`` px tiles on an image of ``size`` (H, W), pass 1 in
    ``moment_tile`` px tiles (None: ``tile``); options: those of plan.plan_iteration
    (style_layers, content_layers, history, device...). whole: the untiled plan of ``size``,
    when the caller has it (it does not depend on the tile); held: held_bytes of the run, or 0
    to plan the arrays alone."""
    names = loss_layers(options)
    grid = tiles.layout(net.layers, names, size, tile)
    moments = tiles.layout(net.layers, names, size, moment_tile or tile)
    whole = whole or plan.plan_iteration(net, size, **options)
    return TiledPlan(grid, whole, plan.plan_iteration(net, grid.largest_window, **options),
                     tuple(names), work=tiles.work_overhead(net.layers, names, grid),
                     moment_layout=moments,
                     moment_window_bytes=forward_only_bytes(net, moments.largest_window, options),
                     moment_overhead=tiles.work_overhead(net.layers, names, moments),
                     held_bytes=held)


def forward_only_bytes(net, window, options):
    """Pass 1's peak on a ``window`` (H, W): memory.forward_only_peaks down to the deepest style
    layer, each style layer's moments summed in bands of the device's work-buffer size (and a
    weighted copy of each band, with masks); 0 without style layers (there is no pass 1)."""
    style = list(options.get("style_layers", ()))
    if not style:
        return 0
    layers = plan.layer_costs(net, window, deepest=plan.deepest_layer(net, style),
                              batch=options.get("batch", 1), itemsize=options.get("itemsize", 4),
                              device=options.get("device", "cpu"))
    band = 2 * Device(options.get("device", "cpu")).chunk * options.get("itemsize", 4)
    return max(memory.forward_only_peaks(layers, style, band_bytes=band))


def stride(net, options):
    """The deepest loss layer's stride: tiles are multiples of it."""
    return tiles.margins(net.layers, loss_layers(options)).stride


def largest_tile_that_fits(net, size, budget, *, whole=None, held=0, **options):
    """The largest tile whose TiledPlan's peak is within ``budget`` bytes; None when none fits.

    The candidates are the ``evened`` tiles that cut the longest side into 1, 2, 3, ... tiles:
    the peak falls with their count, while among tiles giving the same count a larger one only
    costs more (a tile size alone is not monotone: 320 px tiles of 1024 px leave a 64 px one).
    """
    s, longest = stride(net, options), max(size)
    for count in range(1, math.ceil(longest / s) + 1):
        tile = evened(math.ceil(longest / count), size, s)
        if math.ceil(longest / tile) == count and \
                plan_tiled(net, size, tile, whole=whole, held=held,
                           **options).peak_bytes <= budget:
            return tile
    return None


MOMENT_TILE_LIMIT = 1024
"""The largest tile pass 1 takes by itself (px). Larger windows run slower per pixel: on the
2-core AMD EPYC of bench/README.md ("Pass 1 in its own, larger tiles"), pass 1 of a 4096 px
image took 48.8 s in 1024 px tiles and 58.9 s in 2048 px ones, though the latter recompute
less margin (1.05x the forward's work against 1.15x); at 2048 px, 1024 px tiles were the
fastest of 416, 512, 688 and 1024."""


def moment_tile_for(net, size, tile, *, max_memory=None, whole=None, held=0, **options):
    """Pass 1's tile (tiled.TiledObjective's moment_tile) for pass 2's ``tile``: the largest
    ``evened`` tile, cutting the longest side into 1, 2, ... tiles, fewer than ``tile`` does,
    no larger than MOMENT_TILE_LIMIT, with which the TiledPlan's peak is within ``max_memory``;
    ``tile`` itself without a budget or when no larger one fits. Pass 1 is a forward without a
    graph: its window may be about twice as large for the same memory, and every tile fewer is
    margin not recomputed."""
    if max_memory is None:
        return tile
    s, longest = stride(net, options), max(size)
    whole = whole or plan.plan_iteration(net, size, **options)
    for count in range(1, math.ceil(longest / tile)):
        candidate = evened(math.ceil(longest / count), size, s)
        if candidate > MOMENT_TILE_LIMIT:
            continue
        if math.ceil(longest / candidate) == count and candidate > tile and \
                plan_tiled(net, size, tile, moment_tile=candidate, whole=whole, held=held,
                           **options).peak_bytes <= max_memory:
            return candidate
    return tile


def evened(tile, size, stride):
    """The smallest multiple of ``stride`` that cuts ``size`` into as many tiles as ``tile`` does:
    the same grid, less memory, tiles of nearly equal sides (2048 px in 1632 px tiles: 1024)."""
    count = math.ceil(max(size) / tile)
    return math.ceil(math.ceil(max(size) / count) / stride) * stride


def choose_tile(net, size, *, tile=None, max_memory=None, held=0, **options):
    """(tile or None for untiled, a sentence saying why or None) for an image of ``size``.

    tile: --tile, used as given. max_memory: --max-memory in bytes: untiled when one untiled
    iteration fits, else the largest tile that does; UserError when not even the smallest does.
    held: held_bytes of the run, counted against max_memory with the plan.
    """
    if tile is not None:
        return tile, None
    if max_memory is None:
        return None, None
    whole = plan.plan_iteration(net, size, **options)
    if held + whole.peak_bytes <= max_memory:
        return None, None
    found = largest_tile_that_fits(net, size, max_memory, whole=whole, held=held, **options)
    h, w = size
    if found is None:
        least = plan_tiled(net, size, stride(net, options), whole=whole, held=held,
                           **options).peak_bytes
        raise UserError(f"--max-memory {format_bytes(max_memory)} is too small for a {w}x{h} "
                        f"image: even the smallest tiles need about {format_bytes(least)}; give "
                        f"--max-memory {math.ceil(least / 2 ** 20)}M or more, or a smaller --size")
    moment = moment_tile_for(net, size, found, max_memory=max_memory, whole=whole, held=held,
                             **options)
    tiled = plan_tiled(net, size, found, moment_tile=moment, whole=whole, held=held, **options)
    return found, (f"one iteration at {w}x{h} needs about "
                   f"{format_bytes(held + whole.peak_bytes)}, more "
                   f"than --max-memory {format_bytes(max_memory)}: running tiled, "
                   f"{grid_words(tiled)}, about {format_bytes(tiled.peak_bytes)}")


def grid_words(tiled):
    """"416 px tiles (5 x 5; the moments' pass in 1024 px tiles, 2 x 2)" of a TiledPlan."""
    (rows, cols), first = tiled.layout.grid, tiled.moment_layout
    words = f"{tiled.layout.tile} px tiles ({rows} x {cols}"
    if first.tile != tiled.layout.tile:
        words += f"; the moments' pass in {first.tile} px tiles, {first.grid[0]} x {first.grid[1]}"
    return words + ")"


def choose_tile_and_history(net, size, *, precision="full", tile=None, max_memory=None, held=0,
                            **options):
    """(tile or None, half_history, a sentence or None): choose_tile's choice with L-BFGS's
    pairs in ``precision``: "full", "half" (float16, lbfgs_history.py), or "auto": full, unless
    --max-memory makes the run tiled; then half when that lets the tiles grow (the pairs are
    1 GiB of float32 at 2048 x 2048 px) or lets the run fit at all."""
    def choose(half):
        return choose_tile(net, size, tile=tile, max_memory=max_memory, held=held,
                           half_history=half, **options)
    if precision != "auto" or tile is not None or max_memory is None or \
            options.get("optimizer", "lbfgs") != "lbfgs":
        found, why = choose(precision == "half")
        return found, precision == "half", why
    try:
        full = choose(False)
    except UserError:
        full = None                            # too small in full precision: try half
    if full is not None and full[0] is None:
        return None, False, None               # untiled: the history is no burden
    half = choose(True)                        # UserError when not even half precision fits
    if full is not None and half[0] <= full[0]:
        return full[0], False, full[1]
    return half[0], True, half[1] + ", with L-BFGS's history in float16 (half its bytes)"
