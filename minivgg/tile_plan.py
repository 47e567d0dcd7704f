"""Planning a tiled run: its memory, and the largest tile that fits a budget (``--max-memory``).

Read this after plan.py and tiles.py. ``--max-memory`` budgets the whole process, so the plan
also counts what plan.py leaves out: the interpreter with its libraries and the run's own images
(``held_bytes``). A tiled iteration (tiled.py) holds, besides what the whole
run holds (the weights, Winograd's kernels, the losses' targets, the optimiser's state, all
planned on the whole image as plan.py does, and with --style-masks the masks at every style
layer's resolution, held whole: a tile weights its owned positions by views of them), the image's
gradient being summed, and at any moment either one tile's iteration or the total variation's:
    peak = held + weights + kernels + targets + optimiser state + masks + gradient
           + max(iteration of the largest window + its crops of the loss layers, 3 images),
the window's iteration being plan.py's own model of one untiled iteration on the window (which
counts, a little generously, the window's own TV and image gradient too), the crops the copies of
the owned positions tiled.Crop makes, and 3 images the TV's two differences and its gradient.
The peak grows with the tile, so the largest tile under a budget is found by trying the tile
counts 1, 2, 3, ... in turn. ``choose_tile_and_history`` also decides whether L-BFGS's pairs are
kept in float16 (--lbfgs-history-precision auto: when that lets the tiles grow).
"""
import math
from dataclasses import dataclass

from . import plan, tiles
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
    """The plan of one tiled iteration: the grid, the whole image's and the largest window's."""
    layout: tiles.Layout
    whole: plan.IterationPlan     # on the whole image: weights, kernels, targets, state
    window: plan.IterationPlan    # one untiled iteration on the largest window
    loss_layers: tuple            # the layers the losses read
    held_bytes: int = 0           # held_bytes: the interpreter and the run's images
    work: float = 1.0             # tiles.work_overhead: conv multiply-adds per pass over untiled

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
                + w.state_bytes + w.mask_bytes + self.iteration_bytes)


def loss_layers(options):
    """The loss layers of plan.plan_iteration's keyword ``options``, in order, no repeats."""
    return list(dict.fromkeys([*options.get("style_layers", ()),
                               *options.get("content_layers", ())]))


def plan_tiled(net, size, tile, *, whole=None, held=0, **options):
    """The TiledPlan of ``tile`` px tiles on an image of ``size`` (H, W); options: those of
    plan.plan_iteration (style_layers, content_layers, history, device...). whole: the untiled
    plan of ``size``, when the caller has it (it does not depend on the tile); held: held_bytes
    of the run, or 0 to plan the arrays alone."""
    names = loss_layers(options)
    grid = tiles.layout(net.layers, names, size, tile)
    whole = whole or plan.plan_iteration(net, size, **options)
    return TiledPlan(grid, whole, plan.plan_iteration(net, grid.largest_window, **options),
                     tuple(names), held, tiles.work_overhead(net.layers, names, grid))


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
    tiled = plan_tiled(net, size, found, whole=whole, held=held, **options)
    rows, cols = tiled.layout.grid
    return found, (f"one iteration at {w}x{h} needs about "
                   f"{format_bytes(held + whole.peak_bytes)}, more "
                   f"than --max-memory {format_bytes(max_memory)}: running tiled, {found} px "
                   f"tiles ({rows} x {cols}), about {format_bytes(tiled.peak_bytes)}")


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
