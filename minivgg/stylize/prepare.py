"""Everything a run needs before its first iteration, each file checked before any work is done.

The order matters to users: first the paths we will write (so a typo in ``-o`` costs nothing),
then the images (read), then the device and the network, then the images' sizes checked against
the network's layers and their working sizes worked out, then the memory check on those sizes,
and only then the resizing it has approved.
Nothing is written here. Every problem is a ``UserError`` sentence.
"""
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import device as devices
from .. import image, masks, plan
from ..errors import UserError
from ..vgg import load_vgg19, vgg19_layer_specs
from .checkpoint import STATE_SUFFIX, find_last
from .schedule import make_schedule


@dataclass
class Job:
    """The checked inputs of one run: images at their working sizes, paths, device, network."""
    output: Path              # None only for the API without ``output=``
    log: Path
    content: np.ndarray       # rgb (H, W, 3) 0..255 at the working size
    alpha: np.ndarray         # (H, W) 0..255 or None
    styles: list              # rgb arrays, each at its own working size
    init: np.ndarray          # rgb (H, W, 3), the starting image
    device: devices.Device = devices.Device("cpu")
    net: object = None
    resume_from: Path = None  # the state file --resume continues from
    tile: int = None          # tiled evaluation (minivgg/tiled.py) in tiles of this side, or None
    moment_tile: int = None   # its first pass's (the moments) tiles, set with ``tile``
    half_history: bool = False   # L-BFGS keeps its pairs as float16 (minivgg/lbfgs_history.py)
    masks: list = None        # --style-masks: (H, W) 0..1 arrays as read, one per style, or None


# -- paths we will write --------------------------------------------------------------------------
def input_paths(opts):
    """The files the run reads (never to be overwritten)."""
    sources = [opts.content, *opts.style, *(opts.style_masks or ())]
    if opts.init not in ("content", "noise", "style"):
        sources.append(opts.init)
    return [Path(s) for s in sources if isinstance(s, (str, Path))]


def default_output(opts):
    """<content stem>_stylized.png in the current folder (demo_stylized.png for --demo)."""
    stem = "demo" if opts.demo else Path(opts.content).stem
    return Path(f"{stem}_stylized.png")


def check_target(path, what, inputs):
    """Refuse to write ``path`` when it is an input, a folder, or in a missing/unwritable folder."""
    path = Path(path)
    for p in inputs:
        if p.resolve() == path.resolve() or (p.exists() and path.exists() and p.samefile(path)):
            raise UserError(f"{what} '{path}' is one of the input images; choose another name so "
                            "the input is not overwritten")
    if path.is_dir():
        raise UserError(f"{what} '{path}' is a folder; give a file name inside it")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise UserError(f"'{folder}' in the path of {what} is a file, not a folder; choose "
                        "another path")
    if not folder.is_dir():
        raise UserError(f"the folder '{folder}' for {what} does not exist; create it first or "
                        "choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        raise UserError(f"the folder '{folder}' for {what} is not writable; choose another "
                        "folder or fix its permissions") from None


def check_checkpoint_names(output, inputs):
    """Refuse when an input is named like one of output's checkpoints (OUT_0100.png ...)."""
    pattern = re.compile(re.escape(output.stem) + r"_\d+(\.png|px\.png|" + re.escape(STATE_SUFFIX)
                         + ")$")
    for p in inputs:
        if p.resolve().parent == output.resolve().parent and pattern.match(p.name):
            raise UserError(f"the input '{p}' is named like a checkpoint of '{output}' and could "
                            "be overwritten; rename it or choose another output name")


def resolve_paths(opts, *, api=False):
    """(output, log) after every check; the output is None for the API without ``output=``."""
    if opts.output is None and not api:
        opts.output = default_output(opts)
    output = None if opts.output is None else Path(opts.output)
    log = None if opts.log is None else Path(opts.log)
    inputs = input_paths(opts)
    if output is not None:
        if output.suffix.lower() != ".png":
            raise UserError(f"the output '{output}' must be a PNG file; give a name ending in .png")
        check_target(output, "the output", inputs)
        check_checkpoint_names(output, inputs)
    elif opts.checkpoint_every or opts.resume or opts.save_scales:
        raise UserError("checkpoints, --resume and --save-scales need an output file; pass "
                        "output=...png")
    if log is not None:
        if output is not None and log.resolve() == output.resolve():
            raise UserError(f"the log '{log}' is the output image; give the log its own name")
        check_target(log, "the log", inputs)
    return output, log


# -- images ---------------------------------------------------------------------------------------


def check_size(shape, what, need, deepest, *, resized=False):
    """UserError when an image of ``shape`` (H, W) has a side shorter than ``need`` pixels."""
    h, w = shape
    if min(h, w) >= need:
        return
    fix = ("use a larger --size (or --style-scale) or a less elongated image" if resized else
           f"use an image at least {need}x{need} pixels")
    raise UserError(f"the {what} is {w}x{h} pixels{' after resizing' if resized else ''}, too "
                    f"small for layer {deepest}, which needs at least {need} pixels on each "
                    f"side; {fix}")


def read_images(opts):
    """(content, alpha, styles) at the sizes they were given. For --demo all three are None: its
    pictures are drawn at the working size."""
    if opts.demo:
        return None, None, None
    content, alpha = image.read_source(opts.content, "content image")
    styles = [image.read_source(source, "style image")[0] for source in opts.style]
    return content, alpha, styles


def working_shapes(opts, content, styles):
    """[(H, W) of the content, then of each style] at the working sizes; nothing is resized.
    The content's longest side becomes ``size``, each style's ``round(style_scale * size)``.
    Each image is checked, as given and at its working size, against the deepest layer the
    losses read (plan.pixels_needed on VGG-19's layout, which every weights file shares: so a
    too-small image is refused before the weights are read)."""
    from .. import demo
    layout = SimpleNamespace(layers=vgg19_layer_specs())
    deepest = plan.deepest_layer(layout, [*opts.content_layers, *opts.style_layers])
    need = plan.pixels_needed(plan.layers_to(layout, deepest))
    style_size = max(1, round(opts.style_scale * opts.size))
    if opts.demo:
        shapes = [demo.demo_content_shape(max(opts.size, 16)), (max(style_size, 16),) * 2]
    else:
        for i, rgb in enumerate([content, *styles]):
            check_size(rgb.shape[:2], "style image" if i else "content image", need, deepest)
        shapes = [image.longest_shape(content.shape[:2], opts.size),
                  *(image.longest_shape(rgb.shape[:2], style_size) for rgb in styles)]
    for i, shape in enumerate(shapes):
        check_size(shape, "style image" if i else "content image", need, deepest, resized=True)
    check_scales(make_schedule(opts, shapes[0], shapes[1:]), need, deepest)
    return shapes


def check_scales(schedule, need, deepest):
    """UserError when an image at a coarse scale of ``schedule`` is too small for ``deepest``."""
    for size, content, styles in zip(schedule.sizes, schedule.content_shapes,
                                     schedule.style_shapes):
        for i, (h, w) in enumerate([content, *styles]):
            if min(h, w) < need:
                what = "style image" if i else "content image"
                raise UserError(f"at the first scale, {size} px, the {what} is {w}x{h} pixels, "
                                f"too small for layer {deepest}, which needs at least {need} "
                                "pixels on each side; raise --start-size")


def resize_images(opts, content, alpha, styles, shapes):
    """(content, alpha, styles, init) at the working ``shapes``: the allocation the memory check
    (run before this) has approved."""
    if opts.demo:
        from .. import demo
        content, alpha = demo.demo_content(max(opts.size, 16)), None
        styles = [demo.demo_style(shapes[1][0])]
    else:
        content = image.resize_to(content, shapes[0])
        alpha = None if alpha is None else image.resize_to(alpha, shapes[0])
        styles = [image.resize_to(rgb, shape) for rgb, shape in zip(styles, shapes[1:])]
    return content, alpha, styles, initial_image(opts, content, styles)


def initial_image(opts, content, styles):
    """The starting rgb (H, W, 3): the content, seeded uniform noise, the style, or a file."""
    if opts.init == "content":
        return content.copy()
    if opts.init == "noise":
        rng = np.random.default_rng(opts.seed)
        return rng.uniform(0.0, 255.0, size=content.shape).astype(np.float32)
    if opts.init == "style":
        return image.resize_to(styles[0], content.shape[:2])
    rgb, _ = image.read_source(opts.init, "init image")
    return image.resize_to(rgb, content.shape[:2])


def read_style_masks(opts, content, shapes):
    """--style-masks read and checked (masks.read_masks) against the content's shape as given
    (the working shape for --demo); None when off. They are resized when the run needs them."""
    if opts.style_masks is None:
        return None
    return masks.read_masks(opts.style_masks, shapes[0] if content is None else content.shape[:2])


# -- network, memory -----------------------------------------------------------------------------
def load_network(opts, device):
    """VGG-19 from ``--weights`` (or the search/fallback of minivgg.load_vgg19), on ``device``."""
    return device.put_network(load_vgg19(opts.weights, pooling=opts.pooling, seed=opts.seed))


def plan_options(opts, device, **more):
    """The keyword options of plan.plan_iteration for this run on ``device`` (a Device), and
    ``more`` of them (half_history=)."""
    return dict(style_layers=tuple(opts.style_layers), content_layers=tuple(opts.content_layers),
                optimizer=opts.optimizer, history=opts.lbfgs_history, device=device.name,
                masks=len(opts.style_masks or ()), **more)


def check_memory(opts, net, shapes, device, say=print):
    """(tile side or None for untiled, the moments' pass's tile side or None, whether L-BFGS
    keeps its pairs in float16). With --tile or --max-memory, tile_plan's choice for the
    content's shape (a line through ``say`` when it tiles by itself); else UserError when one
    iteration on any of the images of ``shapes`` (H, W) will not fit in free RAM / GPU memory
    (skipped by --force). Run before the images are resized, so the free memory it measures
    (and the size it suggests) does not depend on the --size asked for."""
    from .. import fits, tile_plan
    half = opts.lbfgs_history_precision == "half"
    if opts.tile is not None or opts.max_memory is not None:
        tile, half, why = tile_plan.choose_tile_and_history(
            net, tuple(shapes[0]), precision=opts.lbfgs_history_precision, tile=opts.tile,
            max_memory=opts.max_memory, held=tile_plan.held_bytes(shapes),
            **plan_options(opts, device))
        if why:
            say(why)
        moment = tile and tile_plan.moment_tile_for(
            net, tuple(shapes[0]), tile, max_memory=opts.max_memory,
            held=tile_plan.held_bytes(shapes), **plan_options(opts, device, half_history=half))
        return tile, moment, half
    if opts.force:
        return None, None, half
    available = device.free_bytes()
    for shape in shapes:
        fits.check_memory(net, tuple(shape), available=available,
                          **plan_options(opts, device, half_history=half))
    return None, None, half


def explain_plan(opts, job):
    """The plan of one iteration on this run's content image, on the run's device: an
    IterationPlan, or a tile_plan.TiledPlan when the run is tiled."""
    from .. import tile_plan
    options = plan_options(opts, job.device, half_history=job.half_history)
    size = job.content.shape[:2]
    if job.tile:
        shapes = [size, *(rgb.shape[:2] for rgb in job.styles)]
        return tile_plan.plan_tiled(job.net, size, job.tile, moment_tile=job.moment_tile,
                                    held=tile_plan.held_bytes(shapes),
                                    **options)
    return plan.plan_iteration(job.net, size, **options)


def plan_text(opts, job):
    """The text of --explain: the cost of one iteration on this run's content image (the final,
    largest scale), then with several scales one line per scale and the schedule's total."""
    from .. import explain, machine
    gflops = machine.measure_matmul_gflops(job.device.array_module())
    planned = explain_plan(opts, job)
    if job.tile:
        text = explain.explain_tiled_text(planned, gflops=gflops, device=job.device.name)
    else:
        text = explain.explain_text(planned, gflops=gflops, device=job.device.name)
    schedule = make_schedule(opts, job.content.shape[:2], [s.shape[:2] for s in job.styles])
    if len(schedule.sizes) == 1:
        return text
    scales = [(plan.plan_iteration(job.net, shape, **plan_options(opts, job.device)), n)
              for shape, n in zip(schedule.content_shapes, schedule.iterations)]
    return text + "\n\n" + explain.schedule_text(scales, gflops=gflops)


def prepare(opts, *, api=False, say=None):
    """A Job for validated ``opts``; prints notices through ``say`` (stderr unless quiet)."""
    say = say or (lambda line: None if opts.quiet else print(line, file=sys.stderr))
    output, log = resolve_paths(opts, api=api)
    resume_from = None
    if opts.resume:
        resume_from = find_last(output)
        if resume_from is None:
            raise UserError(f"--resume found no checkpoint of '{output}' (files like "
                            f"{output.stem}_0100{STATE_SUFFIX} beside it); run without --resume, "
                            "with --checkpoint-every N to make some")
    content, alpha, styles = read_images(opts)
    device, notice = devices.choose(opts.device)
    shapes = working_shapes(opts, content, styles)
    style_masks = read_style_masks(opts, content, shapes)
    net = load_network(opts, device)
    tiling = opts.tile is not None or opts.max_memory is not None
    tile, moment_tile, half = check_memory(opts, net, shapes, device, say) \
        if tiling or not opts.explain else (None, None, opts.lbfgs_history_precision == "half")
    content, alpha, styles, init = resize_images(opts, content, alpha, styles, shapes)
    if notice:
        say(notice)                   # only now: a refused run prints its error line alone
    for line in (masks.notices(style_masks, shapes[0], blend_weights=opts.style_blend_weights)
                 if style_masks else []):
        say(line)
    return Job(output, log, content, alpha, styles, init, device, net, resume_from, tile,
               moment_tile, half, style_masks)
