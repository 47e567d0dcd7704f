"""stylize end to end on a tiny VGG-19-shaped .mat (4-8 channels): every option, at 32-48 px."""
import csv

import numpy as np
import pytest
from PIL import Image

import minivgg
from minivgg import losses
from minivgg.files import atomic_write
from minivgg.image import rgb_to_yiq
from minivgg.stylize import checkpoint as ck
from minivgg.stylize.__main__ import main
from minivgg import image
from minivgg.stylize.objective import OfSavedPicture, build_objective
from minivgg.stylize.options import Options, validate
from minivgg.stylize.prepare import prepare
from minivgg.stylize.run import TERMS


def run(tiny_mat, images, *extra, iterations=3, size=32):
    """Run the program in-process on the tiny net; return its exit status."""
    content, style = images
    argv = [content, style, "--weights", tiny_mat, "--size", size, "--iterations", iterations,
            "--quiet", *extra]
    return main([str(a) for a in argv])


def api(tiny_mat, images, **options):
    content, style = images
    options = {"weights": str(tiny_mat), "size": 32, "iterations": 3, "quiet": True, **options}
    return minivgg.stylize(content, style, **options)


def pixels(path):
    with Image.open(path) as img:
        return np.asarray(img).copy()


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- the basic run --------------------------------------------------------------------------------
def test_default_output_name_size_and_determinism(tiny_mat, images, tmp_path):
    assert run(tiny_mat, images) == 0
    first = (tmp_path / "content_stylized.png").read_bytes()
    out = pixels(tmp_path / "content_stylized.png")
    assert out.shape == (24, 32, 3)                         # longest side = --size, aspect kept
    assert run(tiny_mat, images) == 0
    assert (tmp_path / "content_stylized.png").read_bytes() == first   # byte-identical
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "content.png", "content_stylized.png", "style.png"]          # no temporary files left


def test_api_returns_the_image_and_writes_only_when_asked(tiny_mat, images, tmp_path):
    img = api(tiny_mat, images)
    assert isinstance(img, Image.Image) and img.size == (32, 24) and img.mode == "RGB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]
    img2 = api(tiny_mat, images, output=str(tmp_path / "o.png"))
    assert np.array_equal(np.asarray(img2), pixels(tmp_path / "o.png"))
    assert np.array_equal(np.asarray(img), np.asarray(img2))


def test_api_takes_pil_images_and_arrays(tiny_mat, images):
    content, style = images
    with Image.open(content) as c:
        from_pil = minivgg.stylize(c.copy(), np.asarray(Image.open(style)), weights=str(tiny_mat),
                                   size=32, iterations=2, quiet=True)
    from_paths = api(tiny_mat, images, iterations=2)
    assert np.array_equal(np.asarray(from_pil), np.asarray(from_paths))


def test_the_loss_goes_down_and_the_log_has_a_row_per_iteration(tiny_mat, images, tmp_path):
    assert run(tiny_mat, images, "--log", "run.csv", "--init", "noise", iterations=6) == 0
    rows = read_log(tmp_path / "run.csv")
    assert rows[0] == ["iteration", "total", "content", "style", "tv", "seconds", "size"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert {r[6] for r in rows[1:]} == {"32"}                         # one scale: --size
    values = np.array([[float(v) for v in r[1:6]] for r in rows[1:]])
    # the terms are float32, added in float32 (rounding 6e-8 each, all positive) and logged with 9
    # digits: rtol 1e-5 holds on any CPU
    np.testing.assert_allclose(values[:, 0], values[:, 1:4].sum(axis=1), rtol=1e-5)
    assert values[-1, 0] < values[0, 0]
    assert np.all(np.diff(values[:, 4]) >= 0)                          # seconds only grow


def test_adam_and_its_learning_rate(tiny_mat, images, tmp_path):
    assert run(tiny_mat, images, "--optimizer", "adam", "--learning-rate", "5", "-o", "a.png",
               "--log", "a.csv", iterations=4) == 0
    assert run(tiny_mat, images, "--optimizer", "adam", "--learning-rate", "1", "-o", "b.png",
               iterations=4) == 0
    assert not np.array_equal(pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png"))
    totals = [float(r[1]) for r in read_log(tmp_path / "a.csv")[1:]]
    assert totals[-1] < totals[0]


@pytest.mark.parametrize("option, value", [
    ("--content-weight", "0"), ("--style-weight", "7"), ("--tv-weight", "50"),
    ("--content-layers", "relu2_1,relu3_1"), ("--style-layers", "relu1_1,relu2_1"),
    ("--style-layer-weights", "1,0,0,0,3"), ("--style-scale", "0.6"), ("--pooling", "max"),
    ("--seed", "3"),
])
def test_each_loss_option_changes_the_result(tiny_mat, images, tmp_path, option, value):
    assert run(tiny_mat, images, "--init", "noise", "-o", "base.png") == 0
    assert run(tiny_mat, images, "--init", "noise", "-o", "changed.png", option, value) == 0
    assert not np.array_equal(pixels(tmp_path / "base.png"), pixels(tmp_path / "changed.png"))


def test_init_choices(tiny_mat, images, tmp_path):
    content, style = images
    one = ["--optimizer", "adam", "--learning-rate", "0.001"]     # a tiny step: stays at the init
    for init in ("content", "style", str(style), "noise"):
        assert run(tiny_mat, images, "--init", init, "-o", "i.png", *one, iterations=1) == 0
        out = pixels(tmp_path / "i.png").astype(float)
        if init == "content":
            ref = np.asarray(Image.open(content).resize((32, 24), Image.LANCZOS), float)
        elif init != "noise":
            ref = np.asarray(Image.open(style).resize((32, 24), Image.LANCZOS), float)
        else:
            assert out.std() > 50                                  # uniform noise, std ~ 74
            continue
        assert np.abs(out - ref).mean() < 3, init


def test_several_styles_are_blended(tiny_mat, images, tmp_path):
    content, style = images
    flipped = tmp_path / "flipped.png"
    Image.fromarray(255 - pixels(style)).save(flipped)
    base = [content, style, flipped, "--weights", tiny_mat, "--size", "32", "--iterations", "3",
            "--quiet", "--init", "noise"]
    assert main([str(a) for a in base + ["-o", "even.png"]]) == 0
    assert main([str(a) for a in base + ["-o", "skew.png", "--style-blend-weights", "1,9"]]) == 0
    assert main([str(a) for a in base + ["-o", "only.png", "--style-blend-weights", "1,0"]]) == 0
    assert run(tiny_mat, images, "--init", "noise", "-o", "single.png") == 0
    assert not np.array_equal(pixels(tmp_path / "even.png"), pixels(tmp_path / "skew.png"))
    assert np.array_equal(pixels(tmp_path / "only.png"), pixels(tmp_path / "single.png"))


def test_preserve_colors_keeps_the_contents_chroma(tiny_mat, images, tmp_path):
    content, _ = images
    assert run(tiny_mat, images, "--preserve-colors", "-o", "p.png", "--style-weight", "100") == 0
    out = rgb_to_yiq(pixels(tmp_path / "p.png").astype(np.float32))
    ref = rgb_to_yiq(np.asarray(Image.open(content).resize((32, 24), Image.LANCZOS), np.float32))
    assert np.abs(out[:, :, 1:] - ref[:, :, 1:]).mean() < 4       # I, Q: the content's
    assert np.abs(out[:, :, 0] - ref[:, :, 0]).mean() > 4         # Y: stylised


def test_rgba_content_keeps_its_alpha(tiny_mat, images, tmp_path):
    content, style = images
    rgba = np.concatenate([pixels(content), np.zeros((36, 48, 1), np.uint8)], axis=2)
    rgba[:, :24, 3], rgba[:, 24:, 3] = 255, 60
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert run(tiny_mat, (tmp_path / "rgba.png", style), "-o", "o.png") == 0
    out = pixels(tmp_path / "o.png")
    assert out.shape == (24, 32, 4)
    assert np.all(out[:, :14, 3] == 255) and np.all(out[:, 18:, 3] == 60)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16"])
def test_unusual_modes_are_converted_not_refused(tiny_mat, images, tmp_path, mode):
    content, style = images
    img = Image.open(content)
    img = img.convert("L").convert("I;16") if mode == "I;16" else img.convert(mode)
    path = tmp_path / ("odd.tif" if mode == "CMYK" else "odd.png")
    img.save(path)
    assert run(tiny_mat, (path, style), "-o", "o.png", iterations=1) == 0
    assert pixels(tmp_path / "o.png").shape[:2] == (24, 32)


def test_exif_orientation_is_respected(tiny_mat, images, tmp_path):
    content, style = images
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 clockwise to display"
    Image.open(content).save(tmp_path / "rotated.jpg", exif=exif)
    assert run(tiny_mat, (tmp_path / "rotated.jpg", style), "-o", "o.png", iterations=1) == 0
    assert pixels(tmp_path / "o.png").shape[:2] == (32, 24)            # portrait now


def test_demo_runs_on_the_built_in_images(tiny_mat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--demo", "--weights", tiny_mat, "--size", "32", "--iterations", "2", "--quiet"]
    assert main([str(a) for a in argv]) == 0
    assert pixels(tmp_path / "demo_stylized.png").shape == (24, 32, 3)


# -- the log gives the terms of the point the optimiser accepted --------------------------------
def test_log_rows_hold_the_terms_of_each_accepted_image(tiny_mat, images, tmp_path, monkeypatch):
    seen = []                                     # (x, terms) of every evaluation, trials included
    real = OfSavedPicture.value_and_grad

    def recording(self, x):
        total, grad, terms = real(self, x)
        seen.append((np.array(x), terms))
        return total, grad, terms

    monkeypatch.setattr(OfSavedPicture, "value_and_grad", recording)
    assert run(tiny_mat, images, "--init", "noise", "--log", "l.csv", "-o", "o.png",
               "--checkpoint-every", "1", iterations=4) == 0
    assert len(seen) > 5                          # line searches tried points they did not take
    for row in read_log(tmp_path / "l.csv")[1:]:
        x = ck.load_state(tmp_path / f"o_{int(row[0]):04d}.state.npz")["x"]
        terms = [t for y, t in seen if np.array_equal(y, x)][-1]
        assert [float(v) for v in row[1:5]] == [float(f"{terms[k]:.9g}") for k in TERMS]


def checkpoint_of_a_converged_run(tiny_mat, images, tmp_path, *, version):
    """Run 2 iterations with a checkpoint; mark its L-BFGS as converged (as a run that found no
    step lowering the loss saves it); ``version=1``: without the terms, as minivgg wrote before."""
    assert run(tiny_mat, images, "--init", "noise", "--log", "l.csv", "-o", "o.png",
               "--checkpoint-every", "2", iterations=2) == 0
    path = tmp_path / "o_0002.state.npz"
    state = ck.load_state(path)
    state["optimizer_state"]["converged"] = True
    if version == 1:
        state["version"] = 1
        for key in ("term_names", "term_values"):
            state["optimizer_state"].pop(key, None)
    atomic_write(path, ck.dump_state(state))
    return read_log(tmp_path / "l.csv")[2]


@pytest.mark.parametrize("version", [2, 1])
def test_resuming_a_converged_run_logs_the_terms_of_its_image(tiny_mat, images, tmp_path,
                                                               version):
    # The step after resuming does not move: the run used to look for the terms among that
    # iteration's evaluations, found none, and failed with an IndexError.
    last = checkpoint_of_a_converged_run(tiny_mat, images, tmp_path, version=version)
    assert float(last[2]) > 0 and float(last[3]) > 0
    assert run(tiny_mat, images, "--init", "noise", "--log", "l.csv", "-o", "o.png", "--resume",
               iterations=5) == 0
    rows = read_log(tmp_path / "l.csv")[1:]
    assert [r[0] for r in rows] == ["1", "2", "3"]                # stopped: converged
    assert rows[2][1:5] == last[1:5]


# -- the loss of the saved picture ----------------------------------------------------------------
def test_the_objective_is_that_of_the_clipped_picture_with_its_gradient():
    """OfSavedPicture: f(clip(x)) and its gradient, checked by central differences in float64
    on x with pixels below, inside and above the range (none within h of a bound, where the
    derivative jumps); the gradient is 0 past the bounds."""
    mean = np.array([100.0, 120.0, 140.0])
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((1, 3, 4, 5))

    class Cubic:                                  # any smooth f: sum w * x^3 / 1e6
        def value_and_grad(self, x):
            return float((weights * x ** 3).sum() / 1e6), 3 * weights * x ** 2 / 1e6, {}

    f = OfSavedPicture(Cubic(), mean)
    x = rng.uniform(-200.0, 200.0, (1, 3, 4, 5))
    x[np.abs(x + mean.reshape(1, 3, 1, 1)) < 1] += 5        # away from the bounds -mean, 255-mean
    x[np.abs(x - 255 + mean.reshape(1, 3, 1, 1)) < 1] -= 5
    total, grad, _ = f.value_and_grad(x)
    clipped = np.clip(x, -mean.reshape(1, 3, 1, 1), 255 - mean.reshape(1, 3, 1, 1))
    assert total == Cubic().value_and_grad(clipped)[0]
    outside = clipped != x
    assert outside.any() and (~outside).any() and (grad[outside] == 0).all()
    h, numeric = 1e-4, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        numeric[i] = (f.value_and_grad(x + step)[0] - f.value_and_grad(x - step)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_the_saved_picture_has_the_loss_the_run_reports(tiny_mat, images, tmp_path):
    """From noise, whose pixels the first steps push past 0..255, the logged loss of the last
    iteration is the loss of the picture written, up to its rounding to 8 bits (without
    OfSavedPicture the picture's loss was 20-40% above the optimiser's, bench/README.md)."""
    assert run(tiny_mat, images, "--init", "noise", "--log", "l.csv", "-o", "o.png",
               iterations=10) == 0
    logged = float(read_log(tmp_path / "l.csv")[-1][1])
    content, style = images
    opts = validate(Options(content=content, style=[style], weights=str(tiny_mat), size=32,
                            quiet=True))
    job = prepare(opts, api=True)
    x = image.preprocess(pixels(tmp_path / "o.png"), job.net.mean)
    saved = build_objective(job, opts, job.device.put).value_and_grad(x)[0]
    assert saved == pytest.approx(logged, rel=0.01)     # 8-bit rounding: < 0.5 level a pixel
