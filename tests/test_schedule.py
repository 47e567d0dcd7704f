"""Coarse-to-fine: the sizes (pure), the iterate average, and the program over several scales on
the tiny VGG-19-shaped net (48 px final, starting at 24 px: scales of 24, 34 and 48 px)."""
import math

import numpy as np
import pytest

import minivgg
from minivgg import image
from minivgg.averaging import IterateAverage
from minivgg.stylize import checkpoint as ck
from minivgg.stylize.__main__ import main
from minivgg.stylize.objective import next_start
from minivgg.stylize.options import Options, validate
from minivgg.stylize.schedule import make_schedule, scale_sizes
from test_stylize_run import pixels, read_log, run

SCHEDULE = ["--start-size", "24", "--coarse-iterations", "2"]


def multi(tiny_mat, images, *extra, iterations=2):
    return run(tiny_mat, images, *SCHEDULE, *extra, size=48, iterations=iterations)


# -- the sizes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, start, factor, expected", [
    (512, 128, math.sqrt(2), [128, 181, 256, 362, 512]),
    (1024, 128, math.sqrt(2), [128, 181, 256, 362, 512, 724, 1024]),
    (512, 128, 2.0, [128, 256, 512]),
    (300, 100, 2.0, [100, 200, 300]),
    (500, 128, 2.0, [128, 256, 500]),          # the last step may be shorter than the factor
    (512, 512, 1.5, [512]),                    # start = size: a single scale
    (20, 16, 1.01, [16, 17, 18, 19, 20]),      # sizes that round onto the last are dropped
])
def test_scale_sizes(size, start, factor, expected):
    assert scale_sizes(size, start_size=start, factor=factor) == expected


def test_schedule_shapes_iterations_and_weights():
    opts = validate(Options(content="c", style=["s"], size=512, start_size=128, scale_factor=2.0,
                            coarse_iterations=7, iterations=11, style_scale=0.5))
    s = make_schedule(opts, (384, 512), [(300, 256)])
    assert s.sizes == (128, 256, 512) and s.iterations == (7, 7, 11)
    assert s.content_shapes == ((96, 128), (192, 256), (384, 512))
    assert s.style_shapes == (((64, 55),), ((128, 109),), ((300, 256),))
    assert s.weight(0) == 1 / 16 and s.weight(1) == 1 / 4 and s.weight(2) == 1
    assert s.total_work == pytest.approx(7 / 16 + 7 / 4 + 11)
    assert s.same_plan([128, 256, 512], [7, 7]) and not s.same_plan([128, 256, 512], [7, 8])


@pytest.mark.parametrize("options, sizes", [
    (dict(size=100), (100,)),                          # the default start is capped at --size
    (dict(size=512, coarse_iterations=0), (512,)),     # no coarse iterations: one scale
    (dict(size=512), (128, 181, 256, 362, 512)),       # the default
])
def test_default_start_and_single_scale(options, sizes):
    opts = validate(Options(content="c", style=["s"], **options))
    assert make_schedule(opts, (opts.size, opts.size), [(64, 64)]).sizes == sizes


@pytest.mark.parametrize("options, iterations", [
    (dict(size=512), 150),                             # up to 512 px: 150 at the final size
    (dict(size=1024), 75),                             # above, after coarser sizes: 150*512/size
    (dict(size=724), 106),
    (dict(size=1024, start_size=1024), 150),           # a single scale keeps 150
    (dict(size=1024, coarse_iterations=0), 150),
    (dict(size=1024, iterations=40), 40),              # given: used as it is
])
def test_default_iterations_at_the_final_size(options, iterations):
    assert validate(Options(content="c", style=["s"], **options)).iterations == iterations


# -- the iterate average ----------------------------------------------------------------------------
def test_average_is_the_bias_corrected_moving_average():
    points = [np.full(3, v) for v in (4.0, 1.0, 7.0)]
    avg, d = IterateAverage(0.5), 0.5
    for x in points:
        avg.update(x)
    weights = np.array([d ** 2, d, 1.0]) * (1 - d)     # a_3 = (1-d)(d^2 x1 + d x2 + x3)
    expected = weights @ np.array([4.0, 1.0, 7.0]) / (1 - d ** 3)
    np.testing.assert_allclose(avg.value(), expected)
    constant = IterateAverage(0.9)
    for _ in range(3):
        constant.update(np.full(2, 5.0))
    np.testing.assert_allclose(constant.value(), 5.0)   # bias-corrected: no pull towards 0
    last = IterateAverage(0.0)
    for x in points:
        last.update(x)
    np.testing.assert_array_equal(last.value(), points[-1])


# -- the program over several scales ----------------------------------------------------------------
def test_each_scale_runs_logs_its_size_and_ends_at_size(tiny_mat, images, tmp_path, capsys):
    assert multi(tiny_mat, images, "--log", "l.csv", "-o", "o.png", "--save-scales",
                 "--print-every", "1") == 0
    rows = read_log(tmp_path / "l.csv")
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert [r[6] for r in rows[1:]] == ["24", "24", "34", "34", "48", "48"]
    assert pixels(tmp_path / "o.png").shape == (36, 48, 3)
    for size, shape in ((24, (18, 24, 3)), (34, (26, 34, 3)), (48, (36, 48, 3))):
        assert pixels(tmp_path / f"o_{size}px.png").shape == shape
    assert pixels(tmp_path / "o_48px.png").tobytes() == pixels(tmp_path / "o.png").tobytes()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("iteration 1 (24 px): total") and out[5].startswith("iteration 6 (48")


def test_the_progress_bar_shows_the_size(tiny_mat, images, capsys):
    content, style = images
    assert main([str(a) for a in [content, style, "--weights", tiny_mat, "--size", 48,
                                  "--iterations", 2, *SCHEDULE]]) == 0
    err = capsys.readouterr().err
    assert "48 px, 2/2" in err and "100%" in err          # the last display (tqdm skips some)


def test_the_final_scale_is_the_single_scale_objective(tiny_mat, images, tmp_path):
    # the coarse scales only change where the last one starts: with an init of the last
    # scale's own start, the schedule's last scale would be the single-scale run
    from minivgg.stylize.prepare import prepare
    from minivgg.stylize.run import Run
    content, style = images
    base = dict(content=content, style=[style], weights=str(tiny_mat), size=48, quiet=True)
    runs = [Run(prepare(validate(Options(**base, **extra)), api=True), validate(
        Options(**base, **extra)), say=lambda line: None) for extra in ({}, dict(start_size=24))]
    single, schedule = runs
    schedule.enter_scale(2, np.asarray(single.opt.x))
    x = np.asarray(single.opt.x)
    assert single.objective.value_and_grad(x)[2] == schedule.objective.value_and_grad(x)[2]


def init_and_mean():
    rng = np.random.default_rng(0)
    init = np.clip(rng.normal(128, 60, (60, 80, 3)), 0, 255).astype(np.float32)  # sharp detail
    return init, np.array([123.7, 116.8, 103.9], dtype=np.float32)


def test_the_next_start_of_an_unchanged_init_is_the_init_at_the_new_size():
    """Where the result is still the init, the next scale starts where a single-scale run would
    at that size: the enlarged picture's missing band is the init's own detail."""
    init, mean = init_and_mean()
    old, new = (24, 32), (34, 45)
    x = image.preprocess(image.resize_to(init, old), mean)
    want = image.preprocess(image.resize_to(init, new), mean)
    # atol: float32 values up to 255 carry ~1.5e-5 each; the start adds and subtracts three
    # resized images and the mean, so a few such roundings, far below 2e-3, on any CPU
    np.testing.assert_allclose(next_start(x, init, mean, old, new), want, atol=2e-3)


def test_the_next_start_adds_the_same_detail_band_to_any_result():
    """start = up(clip(x)) + (init_new - up(init_old)): the band does not depend on x, and it
    is the init's detail, not nothing (a flat result gets the init's edges)."""
    init, mean = init_and_mean()
    old, new = (24, 32), (34, 45)
    band = image.resize_to(init, new) - image.resize_to(image.resize_to(init, old), new)
    for grey in (40.0, 200.0):
        x = image.preprocess(np.full(old + (3,), grey, np.float32), mean)
        np.testing.assert_allclose(next_start(x, init, mean, old, new),
                                   image.preprocess(grey + band, mean), atol=2e-3)
    assert np.abs(band).mean() > 10
    x = image.preprocess(np.full(old + (3,), 40.0, np.float32), mean)   # the noise init: no band
    np.testing.assert_allclose(next_start(x, None, mean, old, new),
                               image.preprocess(np.full(new + (3,), 40.0), mean), atol=2e-3)


def test_a_run_starts_each_scale_with_the_inits_detail(tiny_mat, images, tmp_path):
    """Adam's steps of 1e-6 leave the init as it is, so every scale of the run starts at the init
    of its own size; enlarging alone would start the last at a blurred 24 px image of it."""
    from PIL import Image
    from minivgg.stylize.prepare import prepare
    from minivgg.stylize.run import Run
    content, style = images
    grain = np.random.default_rng(1).integers(0, 256, (36, 48, 3), dtype=np.uint8)
    Image.fromarray(grain).save(tmp_path / "grain.png")        # detail at every pixel
    opts = validate(Options(content=content, style=[style], weights=str(tiny_mat), size=48,
                            start_size=24, coarse_iterations=1, iterations=1, quiet=True,
                            init=str(tmp_path / "grain.png"), optimizer="adam",
                            learning_rate=1e-6))
    run, starts = Run(prepare(opts, api=True), opts, say=lambda line: None), []
    real = run.enter_scale
    run.enter_scale = lambda k, x0: (starts.append(np.asarray(x0)), real(k, x0))
    run.execute()
    assert len(starts) == 2                                   # 34 and 48 px (24 px: before)
    for x0, shape in zip(starts, run.schedule.content_shapes[1:]):
        want = image.preprocess(image.resize_to(run.job.init, shape), run.job.net.mean)
        # atol: each scale's Adam step moves a pixel by at most ~1e-6 (lr), two scales before
        # the last; the rest is float32 rounding of resized 0..255 values (~1e-4)
        np.testing.assert_allclose(x0, want, atol=1e-2)


def test_the_api_takes_the_schedule_parameters(tiny_mat, images, tmp_path):
    content, style = images
    img = minivgg.stylize(content, style, weights=str(tiny_mat), size=48, iterations=2,
                          quiet=True, start_size=24, scale_factor=2.0, coarse_iterations=1,
                          average=0.5, optimizer="adam")
    assert img.size == (48, 36)
    with pytest.raises(minivgg.errors.UserError, match="--save-scales need an output"):
        minivgg.stylize(content, style, weights=str(tiny_mat), size=48, save_scales=True)


def test_average_changes_the_saved_image_and_seeds_the_next_scale(tiny_mat, images, tmp_path):
    adam = ["--optimizer", "adam", "--init", "noise"]
    assert multi(tiny_mat, images, *adam, "-o", "plain.png") == 0
    assert multi(tiny_mat, images, *adam, "-o", "avg.png", "--average", "0.9",
                 "--log", "avg.csv") == 0
    assert not np.array_equal(pixels(tmp_path / "plain.png"), pixels(tmp_path / "avg.png"))
    # the noise start is far from smooth; Adam's 2 steps of 10 per pixel barely move it, and the
    # average of the iterates is smoother than the last iterate
    plain, avg = (pixels(tmp_path / n).astype(float) for n in ("plain.png", "avg.png"))
    assert np.abs(np.diff(avg, axis=1)).mean() < np.abs(np.diff(plain, axis=1)).mean()


@pytest.mark.parametrize("optimizer, average", [("lbfgs", "0"), ("adam", "0.8")])
def test_resume_in_the_middle_of_a_scale(tiny_mat, images, tmp_path, optimizer, average):
    opt = ["--optimizer", optimizer, "--init", "noise", "--average", average,
           "--coarse-iterations", "3"]
    assert multi(tiny_mat, images, *opt, "-o", "full.png") == 0
    assert multi(tiny_mat, images, *opt, "-o", "part.png", "--checkpoint-every", "4",
                 "--log", "part.csv") == 0                    # iteration 4: 1 of 3 at 34 px
    state = ck.load_state(tmp_path / "part_0004.state.npz")
    assert state["scale"] == 1 and state["schedule"]["sizes"] == [24, 34, 48]
    for p in tmp_path.glob("part_0008.*"):
        p.unlink()                                            # as if stopped after iteration 4
    assert multi(tiny_mat, images, *opt, "-o", "part.png", "--resume", "--log", "part.csv") == 0
    assert (tmp_path / "part.png").read_bytes() == (tmp_path / "full.png").read_bytes()
    rows = read_log(tmp_path / "part.csv")[1:]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 9)]
    assert [r[6] for r in rows] == ["24"] * 3 + ["34"] * 3 + ["48"] * 2


def test_resume_refuses_a_checkpoint_of_another_schedule(tiny_mat, images, tmp_path, capsys):
    assert multi(tiny_mat, images, "-o", "o.png", "--checkpoint-every", "3") == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert multi(tiny_mat, images, "-o", "o.png", "--resume", "--scale-factor", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was made with the schedule 24, 34, 48 px, 2 + 2 + 2" in err[0]
    assert "this run's is 24, 48 px" in err[0] and "Traceback" not in err[0]
    assert run(tiny_mat, images, "-o", "o.png", "--resume", size=48) == 2   # single scale
    assert "--coarse-iterations" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before           # nothing written


def test_a_version_2_checkpoint_resumes_only_as_a_single_scale(tiny_mat, images, tmp_path,
                                                                capsys):
    # made before the schedule existed: no schedule, no scale; it was a single-scale run
    assert run(tiny_mat, images, "-o", "o.png", "--checkpoint-every", "2", "--start-size", "48",
               size=48) == 0
    path = tmp_path / "o_0002.state.npz"
    state = ck.load_state(path)
    for key in ("schedule", "scale"):
        del state[key]
    state["version"] = 2
    state["rows"] = [row[:6] for row in state["rows"]]           # no size column then
    ck.atomic_write(path, ck.dump_state(state))
    assert multi(tiny_mat, images, "-o", "o.png", "--resume") == 2
    assert "was made with the schedule 48 px, this run's is 24, 34, 48 px" in (
        capsys.readouterr().err)
    assert run(tiny_mat, images, "-o", "o.png", "--resume", "--start-size", "48", "--log",
               "l.csv", size=48, iterations=3) == 0
    assert [r[6] for r in read_log(tmp_path / "l.csv")[1:]] == ["48", "48", "48"]


def test_ctrl_c_saves_the_current_scale(tiny_mat, images, tmp_path, monkeypatch, capsys):
    from minivgg import optim
    real, calls = optim.LBFGS.step, []

    def interrupted_at_the_fourth(self):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(optim.LBFGS, "step", interrupted_at_the_fourth)
    assert multi(tiny_mat, images, "-o", "o.png", "--checkpoint-every", "5") == 130
    assert "interrupted at iteration 3 (34 px)" in capsys.readouterr().err
    assert pixels(tmp_path / "o.png").shape == (26, 34, 3)          # the 34 px scale's image


def test_tol_is_per_scale(tiny_mat, images, tmp_path, capsys):
    content, style = images
    argv = [content, style, "--weights", tiny_mat, "--size", 48, "--start-size", 24,
            "--coarse-iterations", 30, "--iterations", 30, "--tol", 0.9, "--tol-window", 1,
            "--log", "l.csv", "--init", "noise"]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert "(24 px): the loss fell by" in err and "(34 px): the loss fell by" in err
    sizes = [r[6] for r in read_log(tmp_path / "l.csv")[1:]]
    assert sizes[-1] == "48" and len(sizes) < 90


def test_explain_gives_a_line_per_scale_and_the_total(images, tmp_path, capsys):
    assert main([str(a) for a in [*images, "--weights", "random", "--size", 96, "--start-size",
                                  48, "--coarse-iterations", 10, "--iterations", 20,
                                  "--explain", "--quiet"]]) == 0
    out = capsys.readouterr().out
    lines = out.split("Schedule (coarse to fine")[1].splitlines()
    rows = [line.split() for line in lines if line[:1].isdigit() or line.startswith("total")]
    assert [r[1] for r in rows[:-1]] == ["48x36", "68x51", "96x72"]
    assert [r[2] for r in rows[:-1]] == ["10", "10", "20"] and rows[-1][1] == "40"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


# -- bad inputs: one sentence, exit 2, nothing written ----------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--start-size", "64"], "--start-size 64 is larger than --size 48"),
    (["--start-size", "big"], "--start-size: invalid int value"),
    (["--start-size", "8"], "needs at least 16 pixels on each side; raise --start-size"),
    (["--start-size", "20"], "the content image is 20x15 pixels"),     # its short side
    (["--scale-factor", "1"], "--scale-factor must be above 1 and at most 4"),
    (["--scale-factor", "0.5"], "--scale-factor must be above 1"),
    (["--scale-factor", "5"], "--scale-factor must be above 1 and at most 4"),
    (["--scale-factor", "nan"], "--scale-factor must be a positive number"),
    (["--coarse-iterations", "-1"], "--coarse-iterations must be a whole number >= 0"),
    (["--average", "1"], "--average is a decay in [0, 1)"),
    (["--average", "-0.1"], "--average must be a finite number >= 0"),
])
def test_bad_schedule_settings(tiny_mat, images, tmp_path, capsys, args, says):
    assert run(tiny_mat, images, "-o", "o.png", *args, size=48) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]
