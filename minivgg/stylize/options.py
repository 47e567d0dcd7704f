"""Every option of the stylize program, its default, and the checks that run before any work.

``Options`` is the one place the defaults live: the command line (``parse_args``) and the Python
API (``minivgg.stylize(content, style, **options)``) both build one and pass it to ``validate``,
which turns every mistake a user can make into one ``UserError`` sentence before an image is read
or a file is written. Checks that need the files (images, output folder) are in prepare.py.
"""
import argparse
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .. import device
from ..errors import UserError
from ..vgg import check_layer_names, check_pooling
from .checks import check_choice, check_number, flag, name_list, number_list
from .mask_options import add_mask_options, check_mask_options
from .memory_options import add_memory_options, check_memory_options
from .schedule import (DEFAULT_COARSE_ITERATIONS, DEFAULT_ITERATIONS, DEFAULT_SCALE_FACTOR,
                       FULL_ITERATIONS_UP_TO, default_iterations)
from .schedule_options import add_schedule_options, check_schedule_options


@dataclass
class Options:
    """The settings of one run; the field names are the long options with - written as _."""
    content: object = None            # path, PIL.Image or rgb array; None only with demo
    style: list = field(default_factory=list)   # one or more, same kinds as content
    output: object = None             # CLI default: <content stem>_stylized.png
    size: int = 512                   # longest side of the result, in pixels
    # at the final size; None: schedule.default_iterations (150 up to 512 px, fewer above
    # after coarser sizes: bench/README.md, "Coarse to fine", measured as the defaults were chosen)
    iterations: int = None
    start_size: int = None            # first scale's longest side; None: schedule.DEFAULT_START_SIZE
    scale_factor: float = DEFAULT_SCALE_FACTOR    # each scale's size over the previous one's
    coarse_iterations: int = DEFAULT_COARSE_ITERATIONS   # at each size before the final one
    average: float = 0.0              # decay of the iterate average; 0: off
    save_scales: bool = False         # write OUT_<size>px.png after each scale
    optimizer: str = "lbfgs"
    learning_rate: float = None       # Adam only; 10.0 when left out (pixel units, 0..255)
    # alpha : beta : gamma = 50 : 1 : 0.1 shows both the photo and the painting at 128-512 px
    # (tuned by eye on Tuebingen / Starry Night; the losses' normalisations keep the terms from
    # growing with the pixel count, but VGG sees the same picture differently at other sizes).
    content_weight: float = 5.0
    style_weight: float = None        # None: DEFAULT_STYLE_WEIGHTS[style_loss], set by validate
    # L_tv was sum d^2 / (N H W); it is now (S/512)^2 * sum d^2 / (N H W), S the longest side, so
    # a resampled picture costs the same at any size. At the default 512 px the factor is
    # (512/512)^2 = 1, so new 0.01 * 1 = old 0.01: the default smoothing is unchanged at 512 px
    # (and 4x the old at 1024 px, 1/4 of it at 256 px, where the old fell as 1/S^2).
    tv_weight: float = 0.01
    content_layers: list = field(default_factory=lambda: ["relu4_2"])
    style_layers: list = field(
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    style_layer_weights: list = None  # one per style layer; equal when None
    style_blend_weights: list = None  # one per style image; equal when None
    style_scale: float = 1.0          # style images' longest side = style_scale * size
    init: str = "content"             # content | noise | style | PATH
    seed: int = 0
    pooling: str = "avg"
    preserve_colors: bool = False
    match_colors: bool = False        # recolour the styles to the content's RGB mean and covariance
    style_loss: str = "gram"          # gram | meancov (minivgg/meancov.py)
    weights: str = None               # PATH, "random", or None to search (see minivgg.weights)
    device: str = "auto"
    checkpoint_every: int = 0         # 0: no checkpoints
    print_every: int = 0              # 0: no printed loss lines
    log: object = None                # CSV file, one row per iteration
    quiet: bool = False
    demo: bool = False
    resume: bool = False
    tol: float = 0.0                  # 0: no early stop
    tol_window: int = 20
    force: bool = False
    explain: bool = False
    trace: bool = False
    tile: int = None                  # px; None: untiled unless --max-memory asks for tiles
    max_memory: object = None         # "6G", "512M" or bytes; None: refuse what does not fit
    lbfgs_history: int = 10           # L-BFGS's m, the (s, y) pairs it keeps
    lbfgs_history_precision: str = "auto"   # full | half (float16) | auto: half when it tiles
    style_masks: list = None          # one mask (path, PIL image, array) per style; None: off


DEFAULT_ADAM_LR = 10.0     # Adam's step when --learning-rate is left out, in pixel units
STYLE_LOSSES = ("gram", "meancov")
# beta per style loss. W2^2 / C is in (feature units)^2, the Gram loss in (feature units)^4 / C^2,
# so their sizes differ by orders of magnitude; meancov's beta was chosen to give the same balance
# of content and style at the defaults (see docs/style-control.md).
DEFAULT_STYLE_WEIGHTS = {"gram": 0.1, "meancov": 5.0}


# -- validation: one sentence per mistake ---------------------------------------------------------
def validate(opts):
    """Check every setting that needs no file; raise UserError naming the first bad one.

    Returns ``opts`` with lists normalised (a single style becomes a one-element list).
    """
    if not isinstance(opts.style, (list, tuple)):
        opts.style = [opts.style]
    opts.style = list(opts.style)
    _check_sources(opts)
    _check_counts(opts)
    _check_colour_and_style_loss(opts)
    _check_weights(opts)
    _check_choices(opts)
    _check_layers(opts)
    check_memory_options(opts)
    check_schedule_options(opts)
    if opts.iterations is None:
        opts.iterations = default_iterations(opts)
    check_mask_options(opts)
    return opts


def _check_sources(opts):
    if opts.demo and (opts.content is not None or opts.style):
        raise UserError("--demo brings its own content and style images; leave out CONTENT and "
                        "STYLE, or drop --demo")
    if not opts.demo and (opts.content is None or not opts.style):
        raise UserError("give a content image and at least one style image (CONTENT STYLE "
                        "[STYLE ...]), or use --demo to try the built-in images")


def _check_counts(opts):
    """Whole numbers: size, iterations (None: its default, set later), seed, the every-N options."""
    for name, low in (("size", 1), ("iterations", 1), ("seed", 0), ("checkpoint_every", 0),
                      ("print_every", 0), ("tol_window", 1)):
        value = getattr(opts, name)
        if name == "iterations" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            what = "a positive whole number" if low else "a whole number >= 0"
            raise UserError(f"{flag(name)} must be {what}, not {value!r}")


def _check_weights(opts):
    """Real numbers: finite, and >= 0 (or > 0 where 0 makes no sense)."""
    for name in ("content_weight", "style_weight", "tv_weight", "tol"):
        check_number(name, getattr(opts, name), positive=False)
    check_number("style_scale", opts.style_scale, positive=True)
    if opts.content_weight == 0 and opts.style_weight == 0:
        raise UserError("--content-weight and --style-weight are both 0, so there is nothing to "
                        "optimise; make at least one of them positive")
    if opts.learning_rate is not None:
        if opts.optimizer != "adam":
            raise UserError("--learning-rate applies to --optimizer adam only (L-BFGS chooses "
                            "its own steps); drop it or add --optimizer adam")
        check_number("learning_rate", opts.learning_rate, positive=True)
    for name, count, what in (("style_layer_weights", len(opts.style_layers), "style layer"),
                              ("style_blend_weights", len(opts.style), "style image")):
        values = getattr(opts, name)
        if values is None:
            continue
        if not isinstance(values, (list, tuple)) or len(values) != count:
            raise UserError(f"{flag(name)} needs one number per {what} ({count}), got {values!r}")
        for v in values:
            check_number(name, v, positive=False)
        if sum(values) <= 0:
            raise UserError(f"{flag(name)} are all 0; give at least one positive weight")


def _check_colour_and_style_loss(opts):
    """--style-loss is one of STYLE_LOSSES (and sets --style-weight's default); --match-colors
    and --preserve-colors exclude each other."""
    if opts.style_loss not in STYLE_LOSSES:
        raise UserError(f"--style-loss must be one of {', '.join(STYLE_LOSSES)}, not "
                        f"{opts.style_loss!r}")
    if opts.style_weight is None:
        opts.style_weight = DEFAULT_STYLE_WEIGHTS[opts.style_loss]
    if opts.match_colors and opts.preserve_colors:
        raise UserError("--match-colors and --preserve-colors both decide the result's colours "
                        "(the content's colours given to the style, or kept in the result); "
                        "choose one")


def _check_choices(opts):
    check_choice("optimizer", opts.optimizer, ("lbfgs", "adam"))
    check_pooling(opts.pooling, what=flag("pooling"))
    check_choice("device", opts.device, device.CHOICES)
    if not isinstance(opts.init, (str, Path)) or str(opts.init) == "":
        raise UserError(f"--init must be content, noise, style or an image path, not {opts.init!r}")


def _check_layers(opts):
    for name in ("content_layers", "style_layers"):
        layers = getattr(opts, name)
        if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
            raise UserError(f"{flag(name)} must list at least one layer, e.g. relu4_2")
        check_layer_names(layers, what=flag(name))
        if len(set(layers)) != len(layers):
            raise UserError(f"{flag(name)} names a layer twice ({', '.join(layers)}); list each "
                            "layer once")


# -- the command line -----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that raises UserError (one line, exit 2 in __main__) instead of printing usage."""

    def error(self, message):
        raise UserError(f"{message}; see --help")


def build_parser():
    """The argparse parser of ``python -m minivgg.stylize``; defaults come from ``Options``."""
    d = Options()
    p = _Parser(prog="python -m minivgg.stylize",
                description="Neural style transfer (Gatys, Ecker & Bethge, CVPR 2016): repaint "
                "CONTENT in the style of STYLE (several styles are blended).")
    p.add_argument("content", nargs="?", help="the photo whose layout is kept")
    p.add_argument("style", nargs="*", help="one or more images whose style is copied")
    p.add_argument("-o", "--output", help="result PNG (default: <content stem>_stylized.png)")
    p.add_argument("--size", type=int, default=d.size, metavar="PX",
                   help="longest side in pixels (%(default)s)")
    p.add_argument("--iterations", type=int, default=d.iterations, metavar="N",
                   help=f"at the final size ({DEFAULT_ITERATIONS}; above {FULL_ITERATIONS_UP_TO} "
                   f"px after coarser sizes {DEFAULT_ITERATIONS} x {FULL_ITERATIONS_UP_TO} / "
                   "size)")
    p.add_argument("--optimizer", default=d.optimizer, help="lbfgs or adam (%(default)s)")
    p.add_argument("--learning-rate", type=float, metavar="LR",
                   help=f"Adam's step in pixel units ({DEFAULT_ADAM_LR})")
    add_schedule_options(p, d)
    _add_loss_options(p, d)
    _add_image_options(p, d)
    _add_run_options(p, d)
    add_memory_options(p, d)
    add_mask_options(p, d)
    return p


def _add_loss_options(p, d):
    styles = ", ".join(f"{w} with {name}" for name, w in DEFAULT_STYLE_WEIGHTS.items())
    for name, what in (("content", "alpha (%(default)s)"), ("style", f"beta ({styles})"),
                       ("tv", "gamma, smoothing; a picture costs the same at any --size "
                        "(%(default)s)")):
        p.add_argument(f"--{name}-weight", type=float, default=getattr(d, f"{name}_weight"),
                       metavar="W", help=what)
    p.add_argument("--style-loss", default=d.style_loss,
                   help="gram (Gatys et al.) or meancov (Wasserstein-2 distance of the features' "
                   "means and covariances) (%(default)s)")
    for name in ("content", "style"):
        default = getattr(d, f"{name}_layers")
        p.add_argument(f"--{name}-layers", type=name_list, default=default, metavar="L,L",
                       help=f"comma-separated ({','.join(default)})")
    p.add_argument("--style-layer-weights", type=number_list, metavar="W,W",
                   help="one per style layer (equal)")
    p.add_argument("--style-blend-weights", type=number_list, metavar="W,W",
                   help="one per style image (equal)")


def _add_image_options(p, d):
    p.add_argument("--style-scale", type=float, default=d.style_scale, metavar="S",
                   help="style images' size relative to --size (%(default)s)")
    p.add_argument("--init", default=d.init,
                   help="content, noise, style or an image path (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="for the noise init and random weights (%(default)s)")
    p.add_argument("--pooling", default=d.pooling, help="avg or max (%(default)s)")
    p.add_argument("--preserve-colors", action="store_true",
                   help="keep the content's colours (luminance-only transfer)")
    p.add_argument("--match-colors", action="store_true",
                   help="give the styles the content's colours (RGB mean and covariance) first")
    p.add_argument("--weights", help="VGG-19 .mat file, or 'random' (default: search)")
    p.add_argument("--device", default=d.device, help="auto, cpu or gpu (%(default)s)")


def _add_run_options(p, d):
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                   help="write OUT_<iteration>.png and the optimiser state every N iterations")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--print-every", type=int, default=d.print_every, metavar="N",
                   help="print the loss terms every N iterations")
    p.add_argument("--log", metavar="FILE.csv",
                   help="one row per iteration: iteration,total,content,style,tv,seconds")
    p.add_argument("--tol", type=float, default=d.tol, metavar="F",
                   help="stop when the loss improves by less than this fraction over "
                   "--tol-window iterations (off)")
    p.add_argument("--tol-window", type=int, default=d.tol_window, metavar="N",
                   help="(%(default)s)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar or notices, except the one about random weights")
    p.add_argument("--demo", action="store_true", help="use the built-in images")
    p.add_argument("--force", action="store_true", help="skip the memory check")
    p.add_argument("--explain", action="store_true",
                   help="print the cost of one iteration layer by layer, then exit")
    p.add_argument("--trace", action="store_true",
                   help="print every op of the first iteration, forward and backward")


def parse_args(argv=None):
    """Options from a command line (sys.argv[1:] when None), validated."""
    ns = build_parser().parse_intermixed_args(argv)   # options may come between the images
    return validate(Options(**vars(ns)))
