"""Neural style transfer as a program and a Python function: ``minivgg.stylize``.

    python -m minivgg.stylize content.jpg style.jpg -o out.png        (see --help)
    img = minivgg.stylize("content.jpg", "style.jpg", size=256)       (a PIL.Image)

Read the package in this order: options.py (every option, its default, and the checks before any
work; checks.py, and the option groups schedule_options.py, memory_options.py, mask_options.py),
prepare.py (paths, images, device, network, memory check), schedule.py (the sizes of
coarse-to-fine), run.py (the optimisation loop over them and what surrounds it), objective.py
(each size's job, objective and optimiser), progress.py (the log and the progress bar),
checkpoint.py (saving and resuming), trace.py (``--trace``). The method itself is in
minivgg/losses.py; the optimisers in minivgg/optim.py.
"""
import sys
from dataclasses import fields

from tqdm import tqdm

from .options import Options, validate

__all__ = ["stylize", "execute"]


def stylize(content=None, style=None, **options):
    """Repaint ``content`` in the style of ``style``; return the result as a PIL image.

    content: a path, a PIL image or an rgb array (H, W, 3) 0..255; style: one of those or a list
    (several styles are blended, see ``style_blend_weights``). The options are the command line's
    long options with - written as _ (``size=256, style_weight=...``), with the same defaults;
    see ``python -m minivgg.stylize --help`` and minivgg/stylize/options.py. Nothing is written
    unless ``output="file.png"`` is given (checkpoints and ``log`` need it). With ``explain=True``
    the plan is printed and None returned. Bad settings raise ``minivgg.errors.UserError``.
    """
    known = {f.name for f in fields(Options)} - {"content", "style"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"stylize() got unknown options {', '.join(unknown)}; the options are "
                        f"{', '.join(sorted(known))}")
    style = [] if style is None else style if isinstance(style, (list, tuple)) else [style]
    opts = validate(Options(content=content, style=list(style), **options))
    return execute(opts, api=True)


def execute(opts, *, api=False):
    """Prepare and run validated Options; the result image (None for ``explain``)."""
    from .prepare import plan_text, prepare
    from .run import Run

    def say(line):                    # a notice on stderr; tqdm.write keeps the progress bar whole
        if not opts.quiet:
            tqdm.write(line, file=sys.stderr)

    job = prepare(opts, api=api, say=say)
    if opts.explain:
        print(plan_text(opts, job))
        return None
    run = Run(job, opts, say=say)
    if opts.trace:
        from .trace import print_trace
        print_trace(run.objective, run.opt.x)
    return run.execute()
