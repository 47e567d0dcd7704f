"""The options that bound a run's memory: --max-memory, --tile, --lbfgs-history and
--lbfgs-history-precision.

options.py holds their fields and defaults (``Options``) and calls the two functions here: the
checks (one sentence each, before any work) and the arguments of the command line. What they do
is in minivgg/tile_plan.py (choosing a tile under --max-memory) and minivgg/tiled.py.
"""
import math
import numbers

from ..errors import UserError
from .checks import check_choice, flag


HISTORY_PRECISIONS = ("auto", "full", "half")
MEMORY_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_memory(value):
    """Bytes of a --max-memory value: a whole number of bytes, or a number with K, M, G or T
    (binary: 1G = 2^30 bytes; "GB", "GiB" read the same); UserError if unparsable or not > 0."""
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "")
    try:
        size = float(number) * MEMORY_UNITS[unit]
    except (ValueError, KeyError):
        size = math.nan
    if isinstance(value, bool) or not math.isfinite(size) or size < 1:
        raise UserError(f"--max-memory must be a size such as 6G or 512M, not {value!r}")
    return int(size)


def check_memory_options(opts):
    """--lbfgs-history >= 1 and its precision a choice; --max-memory a size (kept as bytes);
    --tile a multiple of the deepest loss layer's stride (tiles.py), and --trace (one untiled
    iteration) not with it."""
    check_choice("lbfgs_history_precision", opts.lbfgs_history_precision, HISTORY_PRECISIONS)
    for name in ("lbfgs_history",) + (("tile",) if opts.tile is not None else ()):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise UserError(f"{flag(name)} must be a positive whole number, not {value!r}")
    if opts.max_memory is not None:
        opts.max_memory = parse_memory(opts.max_memory)
    if opts.tile is not None:
        _check_tile(opts)


def _check_tile(opts):
    """--tile: a multiple of the deepest loss layer's stride on VGG-19's layout (16 px down to
    relu5_1, 32 to pool5), which every weights file shares; refused rather than rounded."""
    from .. import tiles
    from ..vgg import vgg19_layer_specs
    layers = list(dict.fromkeys([*opts.style_layers, *opts.content_layers]))
    m = tiles.margins(vgg19_layer_specs(), layers)
    deepest = max(layers, key=[s.name for s in vgg19_layer_specs()].index)
    if opts.tile % m.stride:
        low = opts.tile // m.stride * m.stride
        nearest = f"{low} or {low + m.stride}" if low else str(m.stride)
        raise UserError(f"--tile {opts.tile} is not a multiple of {m.stride}, the stride of "
                        f"{deepest} (the deepest loss layer); use {nearest}")
    if opts.trace:
        raise UserError("--trace prints one untiled iteration op by op; drop --trace or --tile")


def add_memory_options(p, d):
    """--max-memory, --tile, --lbfgs-history and its precision, in their own group of --help."""
    p = p.add_argument_group("memory")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="memory budget, e.g. 6G or 512M: when one iteration would need more, run "
                   "tiled with the largest tile that fits (off: refuse what does not fit)")
    p.add_argument("--tile", type=int, metavar="PX",
                   help="evaluate in tiles of PX x PX pixels, a multiple of 16 down to relu5_1 "
                   "(exact; off)")
    p.add_argument("--lbfgs-history", type=int, default=d.lbfgs_history, metavar="M",
                   help="L-BFGS keeps M pairs of image-sized vectors (%(default)s)")
    p.add_argument("--lbfgs-history-precision", choices=HISTORY_PRECISIONS,
                   default=d.lbfgs_history_precision,
                   help="keep those pairs as float32 (full) or float16 (half: half the memory); "
                   "auto: half when --max-memory makes the run tiled and that allows larger "
                   "tiles (%(default)s)")
