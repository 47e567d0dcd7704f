"""Tiled against untiled: seconds per iteration and the process's peak memory under budgets.

    python bench/bench_tiled.py                                   # 512 and 1024 px, 2G and 1G
    python bench/bench_tiled.py --sizes 2048 --budgets 2G --no-untiled --repeats 1

One iteration is common.py's (VGG-19 with random weights, Gram style on relu1_1..relu5_1, content
on relu4_2, total variation). For each size: the untiled value_and_grad, then for each budget the
tile minivgg.tile_plan.choose_tile_and_history picks (with L-BFGS's state for ``--lbfgs-history``
in ``--lbfgs-history-precision``, the interpreter and the images counted, as ``stylize
--max-memory`` does, with pass 1's own larger tile from tile_plan.moment_tile_for: the tiles
column reads "pass 2 / pass 1"; ``--same-tiles`` runs pass 1 in pass 2's tiles instead) and
minivgg.tiled.TiledObjective's value_and_grad. Every
configuration runs in a fresh Python, which reports the median of ``--repeats`` timed calls
(after the targets are built; no warm-up: a big tiled call is its own warm-up) and its peak
resident memory (VmHWM: the whole process, targets and Python included, what ``--max-memory``
budgets). That process also holds 2 x ``--lbfgs-history`` arrays of the image's size, filled, as
L-BFGS's history in a real run (the plan counts them): float16 where the choice was half
precision (the "pairs" column), else float32. The loss column lets you check that the
tiled loss equals the untiled one.

    python bench/bench_tiled.py --sizes 2048 --budgets 2G --alternate --repeats 5

``--alternate`` times the untiled and the tiled value_and_grad in one fresh process instead, one
after the other ``--repeats`` times after a warm-up each, and reports the medians: the ratio then
carries no drift of the machine's speed between processes (no peak memory: the process holds
both). It flatters the tiled run, though: beside the tiled problem's arrays the untiled
evaluation was measured 20% slower than alone (bench/README.md, "L-BFGS's pairs in float16").
The first call of a run pays for faulting its memory in; the later ones, what every iteration
after the first costs, are what the medians measure.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from minivgg import tile_plan, tiled  # noqa: E402
from minivgg.stylize.memory_options import parse_memory  # noqa: E402
from minivgg.errors import UserError  # noqa: E402
from minivgg.explain import format_bytes  # noqa: E402


def tiled_problem(size, tile, moment_tile=None):
    """common.py's Problem at ``size``, its targets and objective tiled when ``tile`` (pass 1 and
    the targets in ``moment_tile`` px tiles, by default ``tile``), as stylize builds them."""
    if not tile:
        return common.make_problem(common.build_network(), size)
    net, first = common.build_network(), moment_tile or tile
    content, style, x = common.random_images(size)
    obj = common.Objective(net, tiled.tiled_responses(net, content, common.CONTENT_LAYERS,
                                                      tile=first),
                           common.style_targets(net, [style], common.STYLE_LAYERS,
                                                moments=_moments(first)),
                           common.layer_weights(common.STYLE_LAYERS), **common.LOSS_WEIGHTS)
    return common.Problem(net, tiled.TiledObjective(obj, tile=tile, moment_tile=first), x,
                          content, style, common.np)


def _moments(tile):
    return lambda net, image, layers: tiled.tiled_moments(net, image, layers, tile=tile)


def measure(size, tile, repeats, history=0, release=False, half=False, moment_tile=None):
    """{seconds, loss, peak} of one configuration, in this process, holding ``history`` pairs of
    image-sized arrays as L-BFGS does (its s and y vectors, float16 if ``half``); freed memory
    kept unless ``release`` (common.freed_memory)."""
    common.freed_memory(release)
    problem = tiled_problem(size, tile, moment_tile)
    state = history_pairs(problem.x, history, half)
    times, loss = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        loss = problem.objective.value_and_grad(problem.x)[0]
        times.append(time.perf_counter() - start)
    del state
    return dict(seconds=statistics.median(times), loss=loss, peak=common.peak_rss_bytes())


def history_pairs(x, history, half):
    """2 x ``history`` arrays of x's shape, filled (their pages touched): L-BFGS's s and y as a
    real run holds them, float16 if ``half``."""
    dtype = common.np.float16 if half else x.dtype
    return [common.np.ones_like(x, dtype=dtype) for _ in range(2 * history)]


def alternating(size, tile, repeats, history=0, release=False, half=False, moment_tile=None):
    """{untiled, tiled: median seconds, loss} of value_and_grad in this process, alternating
    after a warm-up each (bench_iteration.time_alternating), holding the history as
    ``measure`` does."""
    from bench_iteration import time_alternating
    common.freed_memory(release)
    problems = {"untiled": tiled_problem(size, None),
                "tiled": tiled_problem(size, tile, moment_tile)}
    state, losses = history_pairs(problems["tiled"].x, history, half), {}

    def step(name):
        problem = problems[name]
        return lambda: losses.update({name: problem.objective.value_and_grad(problem.x)[0]})
    times = time_alternating({name: (step(name), None) for name in problems}, repeats)
    del state
    return {**{name: statistics.median(s) for name, s in times.items()}, "loss": losses["tiled"]}


def in_fresh_process(size, tile, repeats, history, release, half=False, function="measure",
                     moment_tile=None):
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import json, "
            f"bench_tiled; print(json.dumps(bench_tiled.{function}({tuple(size)!r}, {tile!r}, "
            f"{repeats}, {history}, {release}, {half}, {moment_tile!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        common.fail(f"the run at {size} px (tile {tile}) failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def chosen_tile(size, budget, history, precision, *, same_tiles=False):
    """(tile or None, half precision pairs?, the plan's peak, the moments' tile) as stylize
    --max-memory chooses; with ``same_tiles`` pass 1 in pass 2's tiles (as before it had its
    own)."""
    net = common.build_network()
    options = dict(style_layers=common.STYLE_LAYERS, content_layers=common.CONTENT_LAYERS,
                   history=history)
    held = tile_plan.held_bytes([size, size])   # the interpreter; content, x and the style
    tile, half, _ = tile_plan.choose_tile_and_history(net, size, precision=precision,
                                                      max_memory=budget, held=held, **options)
    options.update(half_history=half)
    if tile:
        first = tile if same_tiles else tile_plan.moment_tile_for(
            net, size, tile, max_memory=budget, held=held, **options)
        return tile, half, tile_plan.plan_tiled(net, size, tile, moment_tile=first, held=held,
                                                **options).peak_bytes, first
    return tile, half, held + common.plan.plan_iteration(net, size, **options).peak_bytes, None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--budgets", nargs="+", default=["2G", "1G"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--lbfgs-history", type=int, default=10)
    p.add_argument("--lbfgs-history-precision", choices=("auto", "full", "half"),
                   default="auto", help="of the pairs, as stylize's option (%(default)s)")
    p.add_argument("--no-untiled", action="store_true", help="skip the untiled runs")
    p.add_argument("--alternate", action="store_true",
                   help="untiled and tiled alternating in one process (see above)")
    p.add_argument("--same-tiles", action="store_true",
                   help="pass 1 (the moments) in pass 2's tiles, not its own larger ones")
    common.add_release_memory(p)
    args = p.parse_args(argv)
    print("\n".join(common.machine_lines("cpu", common.np)
                    + [common.freed_memory(args.release_memory)]))
    print(f"{'size':>6} {'budget':>8} {'tiles':>9} {'pairs':>6} {'s/iter':>8} "
          f"{'x untiled':>9} {'peak RSS':>10} {'plan':>10}  loss   (tiles: pass 2 / pass 1)")
    for side in args.sizes:
        size, base = (side, side), None
        if args.alternate:
            for text in args.budgets:
                alternate_row(size, text, args)
            continue
        if not args.no_untiled:
            base = in_fresh_process(size, None, args.repeats, args.lbfgs_history,
                                    args.release_memory)
            print(f"{side:>6} {'-':>8} {'-':>9} {'f32':>6} {base['seconds']:>8.2f} {1:>9.2f} "
                  f"{format_bytes(base['peak']):>10} {'':>10}  {base['loss']:.6g}")
        for text in args.budgets:
            chosen = budget_choice(size, text, args)
            if chosen is None:
                continue
            tile, half, planned, first = chosen
            got = in_fresh_process(size, tile, args.repeats, args.lbfgs_history,
                                   args.release_memory, half, moment_tile=first)
            ratio = f"{got['seconds'] / base['seconds']:.2f}" if base else "-"
            pairs = "f16" if half else "f32"
            print(f"{side:>6} {text:>8} {tiles_words(tile, first):>9} {pairs:>6} "
                  f"{got['seconds']:>8.2f} "
                  f"{ratio:>9} {format_bytes(got['peak']):>10} {format_bytes(planned):>10}  "
                  f"{got['loss']:.6g}")


def budget_choice(size, text, args):
    """chosen_tile for the budget ``text``, or None after a line saying why it cannot run (a
    budget unparsable or too small)."""
    try:
        return chosen_tile(size, parse_memory(text), args.lbfgs_history,
                           args.lbfgs_history_precision, same_tiles=args.same_tiles)
    except UserError as e:
        print(f"{size[0]:>6} {text:>8}  {e}")
        return None


def alternate_row(size, text, args):
    """One --alternate line: the untiled and tiled medians of one fresh process, and their ratio."""
    chosen = budget_choice(size, text, args)
    if chosen is None:
        return
    tile, half, planned, first = chosen
    if tile is None:
        print(f"{size[0]:>6} {text:>8}  fits untiled: nothing to alternate")
        return
    got = in_fresh_process(size, tile, args.repeats, args.lbfgs_history, args.release_memory,
                           half, function="alternating", moment_tile=first)
    print(f"{size[0]:>6} {text:>8} {tiles_words(tile, first):>9} {'f16' if half else 'f32':>6} "
          f"{got['tiled']:>8.2f} {got['tiled'] / got['untiled']:>9.2f} {'-':>10} "
          f"{format_bytes(planned):>10}  {got['loss']:.6g}  (untiled {got['untiled']:.2f} s)")


def tiles_words(tile, first):
    """The tiles column: "-" untiled, "416/1024" for pass 2's and pass 1's tiles."""
    return f"{tile}/{first}" if tile else "-"


if __name__ == "__main__":
    main()
