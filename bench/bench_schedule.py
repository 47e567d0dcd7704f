"""Coarse-to-fine against a single scale: wall time, loss evaluations, and the loss at each size.

    python bench/bench_schedule.py CONTENT STYLE --size 512 --out results/

runs ``minivgg.stylize``'s single-scale run (``--start-size`` = ``--size``, ``--single-iterations``,
500 by default as the program's default was) and the schedule (``--start-size``,
``--scale-factor``, ``--coarse-iterations``, ``--iterations``: the program's defaults unless given)
from the same seed, on the same images, weights and device, one after the other. For each it
reports: the wall time, the loss evaluations (line-search trials included), the final-scale loss
(the objective at ``--size`` on the saved image), and the **multi-scale loss**: the same
objective evaluated on the final image downsampled to each size of the schedule, with the targets
of that size (as the schedule's scales build them), one column per size. With ``--out`` both
results are written as PNGs, with a side-by-side picture (``pair.png``) to look at.

``--snapshots K ...`` adds a row for each variant after K iterations of its final size, from the
same run: L-BFGS and Adam do not look ahead at the iteration limit, so the image after K
iterations is the one a run with ``--iterations K`` would give (its wall time and evaluations are
those up to that point). One long run then shows where the loss stands at several counts.

``--each-size`` also prints (stderr), after each size of a run, the multi-scale losses of that
size's result at it and the smaller sizes, the result enlarged to the final size first as the
final image is: where the later sizes' iterations move the coarser sizes' losses.

``--adam-moments reset|resize|rescale`` (with ``--optimizer adam``) chooses what Adam's moment
estimates do between scales: ``reset``, the program's own behaviour (nothing patched), or carried
over, resized to the new image, and also rescaled to its pixel count (adam_moments.py).
"""
import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import miniautograd as ag
from minivgg import image, losses
from minivgg.errors import UserError
from minivgg.stylize.objective import at_scale, build_objective
from minivgg.stylize.options import DEFAULT_ADAM_LR, Options, validate
from minivgg.stylize.prepare import prepare
from minivgg.stylize import run as run_module
from minivgg.stylize.run import Run, result_rgb
from minivgg.stylize.schedule import make_schedule

import common
from adam_moments import MODES, carrying_moments


@contextlib.contextmanager
def counting_evaluations():
    """Record every call of losses.Objective.value_and_grad inside the block: yields a list of the
    pixel counts H*W of the images evaluated (the bench's own instrument; the program is not
    changed)."""
    calls, real = [], losses.Objective.value_and_grad

    def counted(self, x):
        calls.append(x.shape[2] * x.shape[3])
        return real(self, x)

    losses.Objective.value_and_grad = counted
    try:
        yield calls
    finally:
        losses.Objective.value_and_grad = real


@contextlib.contextmanager
def snapshots_at(counts, calls, final_pixels):
    """Record, inside the block, the result after each of ``counts`` iterations of the final
    scale: yields a dict {count: (rgb, seconds since the block began, evaluations)}, the
    evaluations as in run_variant (``calls`` is counting_evaluations' list)."""
    taken, real, start = {}, Run.after_iteration, time.perf_counter()

    def after(self, bar, p):
        real(self, bar, p)
        if self.scale == len(self.schedule.sizes) - 1 and self.opt.iteration in counts:
            taken[self.opt.iteration] = (result_rgb(self.here, self.opts, self.current_x()),
                                         time.perf_counter() - start,
                                         (len(calls), sum(calls) / final_pixels))

    run_module.Run.after_iteration = after
    try:
        yield taken
    finally:
        run_module.Run.after_iteration = real


@contextlib.contextmanager
def losses_after_each_size(enabled):
    """With ``enabled``, print after each size of a run, inside the block, the multi-scale losses
    (multiscale_losses) of that size's result enlarged to the final size, at that size and the
    smaller ones."""
    real = Run.run_scale

    def run_scale(self, bar):
        real(self, bar)
        rgb = image.resize_to(result_rgb(self.here, self.opts, self.current_x()),
                              self.schedule.content_shapes[-1])
        found = multiscale_losses(rgb, self.job, self.opts, self.schedule, last=self.scale)
        print(f"after {self.size()} px: losses {found}", file=sys.stderr, flush=True)

    if enabled:
        run_module.Run.run_scale = run_scale
    try:
        yield
    finally:
        run_module.Run.run_scale = real


def run_variant(opts, counts=(), *, moments="reset", each_size=False):
    """({iterations at the final size: (rgb result at --size, seconds, evaluations)}, job) of one
    stylize run of ``opts``, with a snapshot after each of ``counts`` final-size iterations and
    the result at the end; the evaluations as (count, final-size equivalents: each weighted by
    its pixels over the final image's, a measure of the work that does not depend on the
    machine's load). ``moments``: what Adam's moments do between scales (adam_moments.py);
    ``each_size``: print the losses after each size (losses_after_each_size)."""
    job = prepare(opts, api=True, say=lambda line: None)
    pixels = job.content.shape[0] * job.content.shape[1]
    with (carrying_moments(moments), counting_evaluations() as calls,
          snapshots_at(set(counts), calls, pixels) as taken, losses_after_each_size(each_size)):
        start = time.perf_counter()
        run = Run(job, opts, say=lambda line: None)
        run.execute()
        seconds = time.perf_counter() - start
    taken[run.opt.iteration] = (result_rgb(run.here, opts, run.current_x()), seconds,
                                (len(calls), sum(calls) / pixels))
    return dict(sorted(taken.items())), run.job


def multiscale_losses(rgb, job, opts, schedule, *, last=None):
    """{size: total loss of ``rgb`` downsampled to that scale, with that scale's targets}, for
    the schedule's scales up to index ``last`` (all by default)."""
    found = {}
    for k, size in enumerate(schedule.sizes[:None if last is None else last + 1]):
        here = at_scale(job, schedule, k)
        objective = build_objective(here, opts, job.device.put)
        x = image.preprocess(image.resize_to(rgb, schedule.content_shapes[k]), job.net.mean)
        found[size] = float(ag.to_cpu(objective.terms(ag.Tensor(job.device.put(x)))["total"].data))
    return found


def options(args, *, single):
    """The validated Options of one variant (everything else at the program's defaults)."""
    common = dict(content=args.content, style=[args.style], size=args.size, weights=args.weights,
                  seed=args.seed, device=args.device, quiet=True,
                  optimizer=args.optimizer or Options.optimizer, learning_rate=args.learning_rate)
    if single:
        return validate(Options(**common, iterations=args.single_iterations,
                                start_size=args.size))
    extra = {name: getattr(args, name) for name in
             ("start_size", "scale_factor", "coarse_iterations", "iterations", "average") if getattr(args, name) is not None}
    return validate(Options(**common, **extra))


def bench(args):
    """Run both variants; print the table; write the pictures with --out."""
    schedule_opts = options(args, single=False)
    moments = moments_mode(args, schedule_opts)
    print(common.freed_memory(args.release_memory), file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)    # before the first, long run
    rows = []
    variants = (("single-scale", options(args, single=True)), ("schedule", schedule_opts))
    for name, opts in [v for v in variants if v[0] in args.runs]:
        taken, job = run_variant(opts, args.snapshots, moments=moments, each_size=args.each_size)
        sched = make_schedule(schedule_opts, job.content.shape[:2],
                              [s.shape[:2] for s in job.styles])
        for count, (rgb, seconds, evals) in taken.items():
            rows.append((name, count, seconds, evals, multiscale_losses(rgb, job, opts, sched)))
            print(f"{name} after {count}: {seconds:.1f} s, evaluations {evals}, losses "
                  f"{rows[-1][4]}", file=sys.stderr, flush=True)   # kept if a later run fails
        if args.out:
            image.save_png(Path(args.out) / f"{name}.png", rgb)
    print_table(rows, schedule_opts, moments)
    if args.out and {row[0] for row in rows} == {"single-scale", "schedule"}:
        side_by_side(Path(args.out))


def moments_mode(args, opts):
    """The --adam-moments mode (reset when not given); refused without --optimizer adam."""
    if args.adam_moments is not None and opts.optimizer != "adam":
        raise UserError("--adam-moments applies to --optimizer adam only (L-BFGS restarts its "
                        "history at each scale); drop it or add --optimizer adam")
    return args.adam_moments or "reset"


def print_table(rows, schedule_opts, moments):
    sizes, o = list(rows[0][4]), schedule_opts
    optimizer = f"--optimizer {o.optimizer}"
    if o.optimizer == "adam":
        lr = DEFAULT_ADAM_LR if o.learning_rate is None else o.learning_rate
        optimizer += f", --learning-rate {lr:g}, --adam-moments {moments}"
    print(f"schedule: {', '.join(map(str, sizes))} px; --coarse-iterations "
          f"{o.coarse_iterations}, --iterations {o.iterations}; {optimizer}")
    print("| run | iterations | wall s | evaluations | at final size | final-scale loss | "
          + " | ".join(f"loss at {s}" for s in sizes) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in sizes) + " |")
    for name, count, seconds, evals, found in rows:
        counts = (str(count) if name == "single-scale" else
                  f"{schedule_opts.coarse_iterations} x {len(sizes) - 1} + {count}")
        print(f"| {name} | {counts} | {seconds:.1f} | {evals[0]} | {evals[1]:.1f} | "
              f"{found[sizes[-1]]:.5g} | "
              + " | ".join(f"{found[s]:.5g}" for s in sizes) + " |")


def side_by_side(folder):
    """pair.png: single-scale on the left, the schedule on the right, 8 px apart."""
    left, right = (np.asarray(Image.open(folder / f"{n}.png")) for n in ("single-scale",
                                                                        "schedule"))
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(folder / "pair.png")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--single-iterations", type=int, default=500)
    p.add_argument("--iterations", type=int, help="the schedule's at the final size")
    p.add_argument("--start-size", type=int)
    p.add_argument("--scale-factor", type=float)
    p.add_argument("--coarse-iterations", type=int)
    p.add_argument("--average", type=float)
    p.add_argument("--optimizer")
    p.add_argument("--learning-rate", type=float, help="Adam's step (the program's default)")
    p.add_argument("--adam-moments", choices=MODES,
                   help="Adam's moments at each new scale: reset (the program's, the default), "
                        "resize, rescale (resized and scaled to the pixel count)")
    p.add_argument("--weights", default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for single-scale.png, schedule.png and pair.png")
    p.add_argument("--snapshots", type=int, nargs="+", default=[], metavar="K",
                   help="also report each run after K iterations of its final size")
    p.add_argument("--each-size", action="store_true",
                   help="also print the losses of each size's result (stderr)")
    p.add_argument("--runs", type=lambda text: text.split(","), default=["single-scale", "schedule"],
                   help="which to run: single-scale,schedule (both)")
    common.add_release_memory(p)
    return p.parse_args(argv)


def main(argv=None):
    try:
        bench(parse_args(argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
