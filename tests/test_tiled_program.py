"""--tile, --max-memory and --lbfgs-history: parsing, refusals (one sentence, exit 2, nothing
written), the tile plan (minivgg/tile_plan.py), and a tiled run that gives the untiled result,
with and without --style-masks."""
from types import SimpleNamespace

import numpy as np
import pytest

import minivgg
from minivgg import plan, tile_plan
from minivgg.errors import UserError
from minivgg.stylize.__main__ import main
from minivgg.stylize.checkpoint import load_state
from minivgg.stylize.memory_options import parse_memory
from minivgg.stylize.options import parse_args
from minivgg.vgg import vgg19_layer_specs

GIB, MIB = 2 ** 30, 2 ** 20
LAYOUT = SimpleNamespace(layers=vgg19_layer_specs(), pooling="avg")    # full VGG-19 channels
OPTIONS = dict(style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
               content_layers=("relu4_2",))


@pytest.mark.parametrize("text,expected", [("6G", 6 * GIB), ("512M", 512 * MIB),
                                           ("1.5GiB", int(1.5 * GIB)), ("2gb", 2 * GIB),
                                           (1000, 1000), ("64K", 65536)])
def test_memory_sizes_parse_in_binary_units(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-1G", "", "G", "1X", "nan", True])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(UserError, match="--max-memory must be a size such as 6G"):
        parse_memory(text)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("argv,message", [
    (["--max-memory", "lots"], "--max-memory must be a size such as 6G or 512M, not 'lots'"),
    (["--max-memory", "0"], "--max-memory must be a size"),
    (["--tile", "100"], "--tile 100 is not a multiple of 16, the stride of relu5_1 (the deepest "
                        "loss layer); use 96 or 112"),
    (["--tile", "8"], "not a multiple of 16, the stride of relu5_1 (the deepest loss layer); "
                      "use 16"),
    (["--tile", "0"], "--tile must be a positive whole number, not 0"),
    (["--lbfgs-history", "0"], "--lbfgs-history must be a positive whole number, not 0"),
    (["--tile", "32", "--trace"], "--trace prints one untiled iteration"),
    (["--max-memory", "1K"], "--max-memory 1.0 KiB is too small for a 48x36 image: even the "
                             "smallest tiles need about"),
])
def test_bad_memory_options_are_refused_in_one_sentence(capsys, images, tiny_mat, argv, message):
    content, style = images
    before = snapshot(content.parent)
    assert main([str(content), str(style), "--weights", str(tiny_mat), "--size", "48",
                 *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert snapshot(content.parent) == before


def test_tile_follows_the_deepest_loss_layer():
    """Down to relu3_1 the stride is 4, so 100 px tiles are fine."""
    opts = parse_args(
        ["c.png", "s.png", "--tile", "100", "--style-layers", "relu1_1,relu3_1",
         "--content-layers", "relu2_2"])
    assert opts.tile == 100


def test_the_history_is_counted_in_the_plan():
    small = plan.plan_iteration(LAYOUT, (512, 512), history=2, **OPTIONS)
    large = plan.plan_iteration(LAYOUT, (512, 512), history=10, **OPTIONS)
    assert large.state_bytes - small.state_bytes == 2 * 8 * 512 * 512 * 3 * 4


def test_max_memory_chooses_the_largest_tile_that_fits():
    size = (1024, 768)
    untiled = plan.plan_iteration(LAYOUT, size, **OPTIONS).peak_bytes
    assert tile_plan.choose_tile(LAYOUT, size, max_memory=untiled, **OPTIONS) == (None, None)
    budget = untiled // 2
    tile, why = tile_plan.choose_tile(LAYOUT, size, max_memory=budget, **OPTIONS)
    assert tile % 16 == 0 and f"running tiled, {tile} px tiles" in why
    assert tile_plan.plan_tiled(LAYOUT, size, tile, **OPTIONS).peak_bytes <= budget
    grid = tile_plan.plan_tiled(LAYOUT, size, tile, **OPTIONS).layout.grid
    fewer = tile_plan.evened(-(-1024 // (max(grid) - 1)), size, 16)  # a tile fewer on the long side
    larger = tile_plan.plan_tiled(LAYOUT, size, fewer, **OPTIONS)
    assert larger.peak_bytes > budget       # one tile fewer along the long side does not fit


def test_the_budget_counts_the_program_and_its_images():
    """--max-memory budgets the whole process: with the interpreter and the images held (here
    a 1024x768 content and start image and a 512x512 style) the same budget takes smaller tiles,
    and the plan's peak, with them, stays within it."""
    size, shapes = (768, 1024), [(768, 1024), (512, 512)]
    held = tile_plan.held_bytes(shapes)
    assert held == tile_plan.RUNTIME_BYTES + 3 * 4 * (2 * 768 * 1024 + 512 * 512)
    budget = plan.plan_iteration(LAYOUT, size, **OPTIONS).peak_bytes // 2
    alone, _ = tile_plan.choose_tile(LAYOUT, size, max_memory=budget, **OPTIONS)
    counted, _ = tile_plan.choose_tile(LAYOUT, size, max_memory=budget, held=held, **OPTIONS)
    assert counted < alone
    tiled = tile_plan.plan_tiled(LAYOUT, size, counted, held=held, **OPTIONS)
    assert tiled.peak_bytes <= budget and tiled.held_bytes == held
    untiled = plan.plan_iteration(LAYOUT, size, **OPTIONS).peak_bytes
    assert tile_plan.choose_tile(LAYOUT, size, max_memory=untiled, held=held,
                                 **OPTIONS)[0] is not None     # untiled no longer fits with them


def test_the_moments_pass_takes_the_largest_tile_the_budget_allows():
    """At 2048 px under 2G with float16 pairs: pass 2 in 416 px tiles, pass 1 (no graph) in
    1024 px ones, said in the planning line; the plan's peak stays within the budget, and one
    tile fewer for pass 1 (the whole image) does not fit. Without a budget: the same tile."""
    size, options = (2048, 2048), dict(OPTIONS, half_history=True)
    held = tile_plan.held_bytes([size, size])
    tile, why = tile_plan.choose_tile(LAYOUT, size, max_memory=2 * GIB, held=held, **options)
    first = tile_plan.moment_tile_for(LAYOUT, size, tile, max_memory=2 * GIB, held=held,
                                      **options)
    assert (tile, first) == (416, 1024)
    assert "416 px tiles (5 x 5; the moments' pass in 1024 px tiles, 2 x 2)" in why
    chosen = tile_plan.plan_tiled(LAYOUT, size, tile, moment_tile=first, held=held, **options)
    assert chosen.peak_bytes <= 2 * GIB and chosen.moment_overhead < chosen.work
    whole = tile_plan.plan_tiled(LAYOUT, size, tile, moment_tile=2048, held=held, **options)
    assert whole.peak_bytes > 2 * GIB
    assert chosen.moment_window_bytes < whole.moment_window_bytes
    assert tile_plan.moment_tile_for(LAYOUT, size, tile, **options) == tile


def test_the_moments_pass_takes_no_tile_above_the_limit():
    """Larger windows ran slower per pixel (tile_plan.MOMENT_TILE_LIMIT): with memory for the
    whole 4096 px image, pass 1 still takes 1024 px tiles, and never fewer than pass 2's."""
    options = dict(OPTIONS, half_history=True)
    assert tile_plan.MOMENT_TILE_LIMIT == 1024
    assert tile_plan.moment_tile_for(LAYOUT, (4096, 4096), 512, max_memory=64 * GIB,
                                     **options) == 1024
    assert tile_plan.moment_tile_for(LAYOUT, (4096, 4096), 2048, max_memory=64 * GIB,
                                     **options) == 2048


def test_the_tiled_peak_falls_with_the_tile():
    peaks = [tile_plan.plan_tiled(LAYOUT, (2048, 2048), t, **OPTIONS).peak_bytes
             for t in (1024, 512, 256, 128)]
    assert peaks == sorted(peaks, reverse=True)
    assert peaks[-1] < plan.plan_iteration(LAYOUT, (2048, 2048), **OPTIONS).peak_bytes / 2


def test_explain_shows_the_grid_margins_overhead_and_peak(capsys, images, tiny_mat):
    content, style = images
    assert main([str(content), str(style), "--weights", str(tiny_mat), "--tile", "16",
                 "--size", "48", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "Tiled at 48x36: 16 px tiles, a grid of 3 x 3 (9 tiles)" in out
    assert "margins                               80 px top, 70 px bottom" in out
    assert "pixels computed per pass" in out and "tiled peak memory estimate" in out
    assert "the moments' pass                     16 px tiles, a grid of 3 x 3" in out


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_a_tiled_run_gives_the_untiled_result(images, tiny_mat, pooling):
    """Two L-BFGS iterations, untiled and in 16 px tiles: the same 8-bit image, give or take
    one level where a value lies on a rounding boundary."""
    content, style = images
    common = dict(size=48, iterations=2, weights=str(tiny_mat), pooling=pooling, quiet=True,
                  lbfgs_history=3)
    untiled = np.asarray(minivgg.stylize(str(content), str(style), **common), dtype=int)
    tiled = np.asarray(minivgg.stylize(str(content), str(style), tile=16, **common), dtype=int)
    assert np.abs(untiled - tiled).max() <= 1


def test_the_moments_tile_reaches_the_objective_and_its_targets(images, tiny_mat, monkeypatch):
    """The tile plan's moments tile (made 32 px here, pass 2 in 16) is the one the objective's
    pass 1 and the targets' forwards run in, and the run still gives the untiled result."""
    from minivgg import tiled
    content, style = images
    monkeypatch.setattr(tile_plan, "moment_tile_for", lambda net, size, tile, **_: 2 * tile)
    seen = {}
    for name in ("tiled_responses", "tiled_moments"):
        original = getattr(tiled, name)
        monkeypatch.setattr(tiled, name, lambda *a, _f=original, _n=name, **k:
                            seen.setdefault(_n, k["tile"]) and _f(*a, **k))
    made = tiled.TiledObjective.__init__
    monkeypatch.setattr(tiled.TiledObjective, "__init__", lambda self, o, **k:
                        seen.setdefault("objective", k) and made(self, o, **k))
    common = dict(size=48, iterations=2, weights=str(tiny_mat), quiet=True, lbfgs_history=3)
    untiled = np.asarray(minivgg.stylize(str(content), str(style), **common), dtype=int)
    two = np.asarray(minivgg.stylize(str(content), str(style), tile=16, **common), dtype=int)
    assert seen == {"tiled_responses": 32, "tiled_moments": 32,
                    "objective": {"tile": 16, "moment_tile": 32}}
    assert np.abs(untiled - two).max() <= 1


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_a_tiled_run_with_style_masks_gives_the_untiled_result(images, tiny_mat, pooling):
    """--style-masks with --tile 16: two soft masks that overlap in the middle, five Adam steps:
    the same 8-bit image as untiled, give or take one level (as above). Adam, not L-BFGS: on
    this masked objective, dominated by its style loss, L-BFGS's first line search extrapolates
    from trial steps ~1e-6 apart, so float32 rounding (the objectives agree to ~1e-7 here, and
    to 1e-10 in float64 in test_tiled.py) moves its step: 16 and 32 px tiles, each as exact as
    the other, were seen 19 levels apart after two iterations."""
    content, style = images
    ramp = np.clip(np.linspace(1.5, -0.5, 48)[None, :].repeat(36, axis=0), 0, 1) * 255
    common = dict(size=48, iterations=5, weights=str(tiny_mat), pooling=pooling, quiet=True,
                  optimizer="adam", style_masks=[ramp, 255 - ramp])
    styles = [str(style)] * 2
    untiled = np.asarray(minivgg.stylize(str(content), styles, **common), dtype=int)
    tiled = np.asarray(minivgg.stylize(str(content), styles, tile=16, **common), dtype=int)
    plain = np.asarray(minivgg.stylize(str(content), styles, tile=16,
                                       **{**common, "style_masks": None}), dtype=int)
    assert np.abs(untiled - tiled).max() <= 1
    assert np.abs(plain - tiled).mean() > 1.0          # the masks did change the result


def test_the_tiled_plan_counts_the_masks_held_whole():
    without = tile_plan.plan_tiled(LAYOUT, (512, 512), 128, **OPTIONS)
    masked = tile_plan.plan_tiled(LAYOUT, (512, 512), 128, masks=2, **OPTIONS)
    assert masked.whole.mask_bytes > 0
    assert masked.peak_bytes - without.peak_bytes == masked.whole.mask_bytes


def test_tiles_follow_the_coarse_to_fine_schedule(images, tiny_mat):
    """With a schedule 24 -> 34 -> 48 px and 32 px tiles, the first scale (one tile would hold
    it whole) runs untiled and the others tiled, each scale's tiled objective giving the untiled
    one's loss and gradient; and the whole tiled schedule runs. (Not the same 8-bit image after
    a run: one L-BFGS line search extrapolates by a cubic fit, and the tiled loss's last digits,
    summed otherwise, can pick another acceptable step: 2.47 instead of 4.50 here once.)"""
    from minivgg import image
    from minivgg.stylize.options import Options, validate
    from minivgg.stylize.prepare import prepare
    from minivgg.stylize.run import Run
    content, style = images
    common = dict(size=48, start_size=24, weights=str(tiny_mat), quiet=True, lbfgs_history=3)
    opts = [validate(Options(content=content, style=[style], **common, **extra))
            for extra in ({}, dict(tile=32))]
    runs = [Run(prepare(o, api=True), o, say=lambda line: None) for o in opts]
    for k, shape in enumerate(runs[0].schedule.content_shapes):
        x = image.preprocess(image.resize_to(runs[0].job.content, shape), runs[0].job.net.mean)
        found = []
        for r in runs:
            r.enter_scale(k, x)
            found.append(r.objective.value_and_grad(x)[:2])
        assert runs[1].here.tile == (None if k == 0 else 32)
        (loss, grad), (tiled_loss, tiled_grad) = found
        # the same sums in another order, in float32 (eps 1.2e-7): measured 3e-7 of the loss and
        # 2e-7 of the largest gradient (AMD EPYC); 1e-5 and 1e-4 leave 30x and 500x for another
        # CPU's summation order (the exactness itself is tested in float64 in test_tiled.py)
        assert tiled_loss == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(tiled_grad, grad, atol=1e-4 * np.abs(grad).max())
    out = minivgg.stylize(str(content), str(style), **common, tile=32, coarse_iterations=1,
                          iterations=1)
    assert out.size == (48, 36)


def test_a_scale_no_longer_than_the_tile_runs_untiled():
    import dataclasses
    from types import SimpleNamespace

    from minivgg.stylize.objective import at_scale
    Job = dataclasses.make_dataclass("Job", ["content", "alpha", "styles", "tile", "moment_tile"])
    job = Job(np.zeros((36, 48, 3), np.float32), None, [np.zeros((32, 32, 3), np.float32)], 32,
              48)
    schedule = SimpleNamespace(content_shapes=[(18, 24), (36, 48)],
                               style_shapes=[[(16, 16)], [(32, 32)]])
    coarse, final = at_scale(job, schedule, 0), at_scale(job, schedule, 1)
    assert (coarse.tile, coarse.moment_tile) == (None, None)   # 24 px: one tile holds it whole
    assert (final.tile, final.moment_tile) == (32, 48)


# -- L-BFGS's history in half precision ------------------------------------------------------------
def test_half_history_halves_the_pairs_in_the_plan():
    full = plan.plan_iteration(LAYOUT, (512, 512), history=10, **OPTIONS)
    half = plan.plan_iteration(LAYOUT, (512, 512), history=10, half_history=True, **OPTIONS)
    assert full.state_bytes - half.state_bytes == 2 * 10 * 512 * 512 * 3 * (4 - 2)


def test_auto_precision_takes_half_when_it_lets_the_tiles_grow():
    """At 2048 x 2048 under 2 GiB the pairs (960 MiB in float32) leave small tiles; in float16
    the tiles grow, and the auto choice says so. Untiled, or with --tile, the pairs stay full."""
    size, choose = (2048, 2048), tile_plan.choose_tile_and_history
    full_tile, _ = tile_plan.choose_tile(LAYOUT, size, max_memory=2 * GIB, **OPTIONS)
    tile, half, why = choose(LAYOUT, size, precision="auto", max_memory=2 * GIB, **OPTIONS)
    assert half and tile > full_tile and why.endswith("with L-BFGS's history in float16 "
                                                      "(half its bytes)")
    assert tile_plan.plan_tiled(LAYOUT, size, tile, half_history=True,
                                **OPTIONS).peak_bytes <= 2 * GIB
    assert choose(LAYOUT, size, precision="full", max_memory=2 * GIB, **OPTIONS) == \
        (full_tile, False, tile_plan.choose_tile(LAYOUT, size, max_memory=2 * GIB,
                                                 **OPTIONS)[1])
    assert choose(LAYOUT, size, precision="auto", max_memory=64 * GIB, **OPTIONS) == \
        (None, False, None)
    assert choose(LAYOUT, size, precision="auto", tile=256, **OPTIONS) == (256, False, None)
    assert choose(LAYOUT, size, precision="half", tile=256, **OPTIONS) == (256, True, None)


def test_auto_precision_takes_half_when_full_cannot_fit_at_all():
    size, choose = (2048, 2048), tile_plan.choose_tile_and_history
    smallest = tile_plan.plan_tiled(LAYOUT, size, 16, **OPTIONS).peak_bytes
    with pytest.raises(UserError, match="even the smallest tiles"):
        tile_plan.choose_tile(LAYOUT, size, max_memory=smallest - 1, **OPTIONS)
    tile, half, _ = choose(LAYOUT, size, precision="auto", max_memory=smallest - 1, **OPTIONS)
    assert half and tile >= 16


def test_a_run_keeps_its_pairs_in_the_precision_chosen(images, tiny_mat, tmp_path):
    """The checkpoint holds the pairs as the optimiser keeps them: float16 with "half", float32
    with "full"; a bad precision is refused in one sentence."""
    content, style = images
    for precision, dtype in (("half", np.float16), ("full", np.float32)):
        out = tmp_path / f"{precision}.png"
        assert main([str(content), str(style), "--weights", str(tiny_mat), "--size", "32",
                     "--start-size", "32", "--iterations", "3", "--checkpoint-every", "3",
                     "--quiet", "--lbfgs-history-precision", precision, "-o", str(out)]) == 0
        pairs = load_state(tmp_path / f"{precision}_0003.state.npz")["optimizer_state"]
        assert len(pairs["s"]) > 0 and pairs["s"].dtype == dtype and pairs["y"].dtype == dtype
    with pytest.raises(UserError, match="--lbfgs-history-precision must be one of auto, full, "
                                        "half, not 'double'"):
        minivgg.stylize(str(content), str(style), lbfgs_history_precision="double")
