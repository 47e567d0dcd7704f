"""The options of the coarse-to-fine schedule: --start-size, --scale-factor, --coarse-iterations,
--average and --save-scales.

options.py holds their fields and defaults (``Options``) and calls the two functions here: the
checks (one sentence each, before any work) and the arguments of the command line. What they do
is in schedule.py (the sizes) and run.py (a run over them).
"""
import numbers

from ..errors import UserError
from .checks import check_number
from .schedule import DEFAULT_START_SIZE, MAX_SCALE_FACTOR


def check_schedule_options(opts):
    """--start-size (16 <= it <= --size; the layers' own minimum is checked in prepare.py on the
    shapes), --scale-factor in (1, 4], --coarse-iterations >= 0, --average in [0, 1)."""
    if opts.start_size is not None:
        start = opts.start_size
        if isinstance(start, bool) or not isinstance(start, numbers.Integral):
            raise UserError(f"--start-size must be a whole number of pixels, not {start!r}")
        if start > opts.size:
            raise UserError(f"--start-size {start} is larger than --size {opts.size}; the "
                            "schedule grows to --size, so give a start size up to it")
    factor = opts.scale_factor
    check_number("scale_factor", factor, positive=True)
    if not 1 < factor <= MAX_SCALE_FACTOR:
        raise UserError(f"--scale-factor must be above 1 and at most {MAX_SCALE_FACTOR:g} (each "
                        f"size over the one before; 1.414 is the default), not {factor!r}")
    coarse = opts.coarse_iterations
    if isinstance(coarse, bool) or not isinstance(coarse, numbers.Integral) or coarse < 0:
        raise UserError(f"--coarse-iterations must be a whole number >= 0, not {coarse!r}")
    check_number("average", opts.average, positive=False)
    if opts.average >= 1:
        raise UserError(f"--average is a decay in [0, 1) (0.9 averages about the last 10 "
                        f"iterates; 0 is off), not {opts.average!r}")


def add_schedule_options(p, d):
    """Coarse-to-fine (schedule.py, docs/schedule.md)."""
    g = p.add_argument_group("coarse to fine", "optimise a small image first, then grow it by "
                             "--scale-factor up to --size, starting each size from the last")
    g.add_argument("--start-size", type=int, metavar="PX",
                   help=f"the first size's longest side ({DEFAULT_START_SIZE}, or --size if "
                   "smaller); equal to --size: a single scale")
    g.add_argument("--scale-factor", type=float, default=d.scale_factor, metavar="F",
                   help="each size over the one before (sqrt 2 = 1.414)")
    g.add_argument("--coarse-iterations", type=int, default=d.coarse_iterations, metavar="N",
                   help="iterations at each size before the last (%(default)s); 0: a single "
                   "scale")
    g.add_argument("--average", type=float, default=d.average, metavar="DECAY",
                   help="save the moving average of the iterates (e.g. 0.9 with Adam); 0: off")
    g.add_argument("--save-scales", action="store_true",
                   help="also write OUT_<size>px.png at the end of each size")
