"""stylize's options: parsing, defaults, and every bad setting refused in one sentence, exit 2,
with nothing written and no input touched. Most refusals happen before the network is built; the
images' sizes are checked against its layers once it is."""
import math
import os

import numpy as np
import pytest
from PIL import Image

import miniautograd as ag
import minivgg
from minivgg.errors import UserError
from minivgg.stylize.__main__ import main
from minivgg.matfile import VGG19_LAYERS
from minivgg.stylize.options import Options, parse_args, validate


def write_image(path, size=(40, 32), mode="RGB", seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture
def images(tmp_path, monkeypatch):
    """content.png and style.png in an otherwise empty folder; the test runs in that folder."""
    content = write_image(tmp_path / "content.png")
    style = write_image(tmp_path / "style.png", seed=1)
    monkeypatch.chdir(tmp_path)
    return content, style


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def refused(capsys, argv, folder):
    """Run main(argv); check exit 2, one 'error:' line, no new or changed file; return the line."""
    before = snapshot(folder)
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert snapshot(folder) == before
    return err[0]


# -- parsing --------------------------------------------------------------------------------------
def test_defaults_of_the_command_line_are_those_of_options():
    opts = parse_args(["c.png", "s.png"])
    assert opts == validate(Options(content="c.png", style=["s.png"]))   # beta set per loss


def test_lists_several_styles_and_options_between_images():
    opts = parse_args(["c.png", "--size", "64", "s1.png", "s2.png", "--style-layers",
                       "relu1_1, relu3_1", "--style-blend-weights", "1,3",
                       "--style-layer-weights", "2,1"])
    assert (opts.content, opts.style, opts.size) == ("c.png", ["s1.png", "s2.png"], 64)
    assert opts.style_layers == ["relu1_1", "relu3_1"]
    assert opts.style_blend_weights == [1.0, 3.0] and opts.style_layer_weights == [2.0, 1.0]


def test_layer_names_are_vgg19s():
    names = list(VGG19_LAYERS)
    assert len(names) == 37 and names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names.index("pool4") < names.index("conv5_1") and names[-1] == "pool5"


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "--size must be a positive whole number"),
    (["--size", "big"], "--size: invalid int value"),
    (["--iterations", "0"], "--iterations must be a positive whole number"),
    (["--iterations", "-5"], "--iterations must be a positive whole number"),
    (["--content-weight", "-1"], "--content-weight must be a finite number >= 0"),
    (["--style-weight", "nan"], "--style-weight must be a finite number >= 0"),
    (["--tv-weight", "inf"], "--tv-weight must be a finite number >= 0"),
    (["--content-weight", "0", "--style-weight", "0"], "nothing to optimise"),
    (["--style-scale", "0"], "--style-scale must be a positive number"),
    (["--optimizer", "adam", "--learning-rate", "-0.1"], "--learning-rate must be a positive"),
    (["--learning-rate", "1"], "--learning-rate applies to --optimizer adam only"),
    (["--optimizer", "sgd"], "--optimizer must be one of lbfgs, adam"),
    (["--pooling", "min"], "--pooling must be one of avg, max"),
    (["--device", "tpu"], "--device must be one of auto, cpu, gpu"),
    (["--style-layers", "relu9_1"], "no layer 'relu9_1' in VGG-19; use one of conv1_1, relu1_1"),
    (["--content-layers", "fc7"], "no layer 'fc7' in VGG-19"),
    (["--style-layers", "relu1_1,relu1_1"], "names a layer twice"),
    (["--style-layer-weights", "1,2"], "needs one number per style layer (5)"),
    (["--style-layer-weights", "0,0,0,0,0"], "are all 0"),
    (["--style-layer-weights", "1,1,x,1,1"], "expected numbers separated by commas"),
    (["--style-blend-weights", "1,1"], "needs one number per style image (1)"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be a whole number >= 0"),
    (["--tol", "-0.5"], "--tol must be a finite number >= 0"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_settings_are_refused_in_one_sentence(capsys, images, argv, message):
    content, style = images
    line = refused(capsys, [content, style, *argv], content.parent)
    assert message in line


def test_missing_images_and_demo_conflicts(capsys, images):
    content, style = images
    folder = content.parent
    assert "does not exist" in refused(capsys, [folder / "nope.jpg", style], folder)
    assert "does not exist" in refused(capsys, [content, folder / "nope.png"], folder)
    assert "at least one style image" in refused(capsys, [content], folder)
    assert "or use --demo" in refused(capsys, [], folder)
    assert "leave out CONTENT and STYLE" in refused(capsys, ["--demo", content, style], folder)


def test_files_that_are_not_images(capsys, images, tmp_path):
    content, style = images
    (tmp_path / "notes.png").write_text("not a picture")
    good = (tmp_path / "photo.jpg")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(good, quality=95)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:400])
    assert "not an image" in refused(capsys, [tmp_path / "notes.png", style], tmp_path)
    assert "truncated or corrupt" in refused(capsys, [content, tmp_path / "cut.jpg"], tmp_path)
    assert "is a folder" in refused(capsys, [content, tmp_path], tmp_path)


def test_decompression_bomb_says_what_to_do(capsys, images, tmp_path):
    content, _ = images
    side = math.isqrt(Image.MAX_IMAGE_PIXELS) + 100              # just over Pillow's limit
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")     # 1 bit per pixel: tiny file
    line = refused(capsys, [content, tmp_path / "bomb.png"], tmp_path)
    assert "decompression bomb" in line and "downscale" in line


def test_images_too_small_for_the_network_give_the_minimum(capsys, images, tmp_path):
    content, style = images
    write_image(tmp_path / "tiny.png", size=(8, 8))
    # checked against VGG-19's layout before any weights are looked for: no weights file here,
    # and still the error is the one line (no random-weights notice before it)
    line = refused(capsys, [tmp_path / "tiny.png", style], tmp_path)
    assert "8x8 pixels" in line and "at least 16 pixels" in line and "relu5_1" in line
    line = refused(capsys, [content, style, "--size", "12"], tmp_path)
    assert "after resizing" in line and "at least 16 pixels" in line


def test_pixels_needed_counts_the_pools_down_to_the_deepest_layer():
    from minivgg.plan import deepest_layer, layers_to, pixels_needed
    from minivgg.vgg import random_vgg19
    net = random_vgg19(channels=(4,) * 16)

    def needed(names):
        return pixels_needed(layers_to(net, deepest_layer(net, names)))
    assert needed(["relu1_1"]) == 1 and needed(["pool1"]) == 2
    assert needed(["relu1_1", "relu3_1"]) == 4 and needed(["relu5_1"]) == 16
    assert needed(["pool5"]) == 32


def test_output_that_is_an_input_or_unwritable(capsys, images, tmp_path):
    content, style = images
    assert "is one of the input images" in refused(capsys, [content, style, "-o", style], tmp_path)
    assert "is one of the input images" in refused(
        capsys, [content, style, "-o", f"./{content.name}"], tmp_path)
    assert "is one of the input images" in refused(
        capsys, [content, style, "--init", tmp_path / "init.png", "-o", "init.png"], tmp_path)
    assert "does not exist; create it" in refused(
        capsys, [content, style, "-o", tmp_path / "no" / "out.png"], tmp_path)
    assert "is a file, not a folder" in refused(
        capsys, [content, style, "-o", content / "out.png"], tmp_path)
    assert "must be a PNG file" in refused(capsys, [content, style, "-o", "out.jpg"], tmp_path)
    assert "is the output image" in refused(
        capsys, [content, style, "-o", "a.png", "--log", "a.png"], tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_output_folder_not_writable(capsys, images, tmp_path):
    content, style = images
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in refused(capsys, [content, style, "-o", locked / "o.png"], tmp_path)


def test_input_named_like_a_checkpoint_of_the_output(capsys, images, tmp_path):
    content, _ = images
    write_image(tmp_path / "out_0100.png", seed=3)
    line = refused(capsys, [content, tmp_path / "out_0100.png", "-o", "out.png"], tmp_path)
    assert "named like a checkpoint" in line


def test_bad_weights_files(capsys, images, tmp_path):
    content, style = images
    (tmp_path / "notes.txt").write_text("not weights")
    args = [content, style, "--size", "32"]
    assert "does not exist" in refused(capsys, [*args, "--weights", "nope.mat"], tmp_path)
    assert "not a MATLAB .mat file" in refused(capsys, [*args, "--weights", "notes.txt"], tmp_path)


def test_resume_without_a_checkpoint(capsys, images, tmp_path):
    content, style = images
    line = refused(capsys, [content, style, "-o", "out.png", "--resume"], tmp_path)
    assert "--resume found no checkpoint" in line and "out_0100.state.npz" in line


@pytest.mark.skipif(ag.gpu_available(), reason="this machine has a GPU")
def test_device_gpu_without_cupy_says_what_to_install(capsys, images, tmp_path):
    content, style = images
    line = refused(capsys, [content, style, "--device", "gpu"], tmp_path)
    assert "--device gpu" in line and "pip install" in line


def test_api_takes_the_same_options_and_refuses_unknown_ones(images):
    content, style = images
    with pytest.raises(TypeError, match="unknown options colour"):
        minivgg.stylize(content, style, colour=True)
    with pytest.raises(UserError, match="--size must be a positive whole number"):
        minivgg.stylize(content, style, size=2.5)
    with pytest.raises(UserError, match="--style-weight must be a finite number"):
        minivgg.stylize(content, style, style_weight=float("nan"))
    with pytest.raises(UserError, match="--style-layers must list at least one layer"):
        minivgg.stylize(content, style, style_layers="relu1_1")
    with pytest.raises(UserError, match="need an output file"):
        minivgg.stylize(content, style, checkpoint_every=5)


def test_memory_check_refuses_with_the_estimate_and_a_size_that_fits(capsys, images, tmp_path,
                                                                     monkeypatch):
    from minivgg.device import Device
    content, style = images
    monkeypatch.setattr(Device, "free_bytes", lambda self: 300 * 2 ** 20)
    line = refused(capsys, [content, style, "--weights", "random", "--size", "512"], tmp_path)
    assert "one iteration at 512x410 needs about" in line and "300.0 MiB" in line
    assert "use --size" in line
    size = int(line.split("use --size ")[1].split()[0])
    assert 16 <= size < 512
    # what the message offers must pass the same check (--explain skips it: no run, no refusal)
    assert main([str(a) for a in [content, style, "--weights", "random", "--size", size,
                                  "--explain", "--quiet"]]) == 0
    from minivgg.stylize.options import Options, validate
    from minivgg.stylize.prepare import prepare
    opts = validate(Options(content=content, style=[style], weights="random", size=size,
                            quiet=True))
    assert prepare(opts).content.shape[1] == size
    opts.force, opts.size = True, 512
    assert prepare(opts).content.shape[1] == 512                        # --force skips the check


def test_memory_check_runs_before_any_image_is_resized(capsys, images, tmp_path, monkeypatch):
    """A --size typo must be refused from the shapes alone: resizing a small photo to 30000 px
    first would take 8 GiB (and once let the kernel kill the run with no message), and the free
    memory measured after it made the suggested size depend on the --size asked for."""
    import minivgg.image
    from minivgg.device import Device
    content, style = images
    monkeypatch.setattr(Device, "free_bytes", lambda self: 2 * 2 ** 30)

    def no_resize(array, shape):
        raise AssertionError(f"resized to {shape} before the memory check")
    monkeypatch.setattr(minivgg.image, "resize_to", no_resize)
    lines = [refused(capsys, [content, style, "--weights", "random", "--size", size], tmp_path)
             for size in (30000, 3000)]
    assert "one iteration at 30000x" in lines[0]
    suggestions = [line.split("use --size ")[1] for line in lines]
    assert suggestions[0] == suggestions[1]


def test_demo_shapes_are_known_before_drawing():
    from minivgg import demo
    assert demo.demo_content_shape(40) == demo.demo_content(40).shape[:2] == (30, 40)


def test_memory_check_counts_the_content_loss(capsys, images, tmp_path, monkeypatch):
    """Bug: plan_options left out content_layers, so the check missed the content loss's target
    P and its kept F - P: a budget one byte short of the full plan passed."""
    from minivgg import plan
    from minivgg.device import Device
    from minivgg.stylize.options import validate
    from minivgg.stylize.prepare import prepare
    from minivgg.vgg import random_vgg19
    content, style = images                                    # both 40x32: 48x38 at --size 48
    full = plan.plan_iteration(random_vgg19(), (38, 48), style_layers=Options().style_layers,
                               content_layers=["relu4_2"])
    monkeypatch.setattr(Device, "free_bytes", lambda self: full.peak_bytes - 1)
    opts = validate(Options(content=content, style=[style], weights="random", size=48,
                            quiet=True))
    with pytest.raises(UserError, match="one iteration at 48x38 needs about"):
        prepare(opts)


def test_explain_plans_on_the_device_of_the_run(images, monkeypatch):
    """Bug: plan_text left out the device, so --explain --device gpu showed CPU buffer sizes."""
    from minivgg import machine, plan
    from minivgg.device import Device
    from minivgg.explain import format_bytes
    from minivgg.stylize.options import validate
    from minivgg.stylize.prepare import plan_text, prepare
    content, style = images
    opts = validate(Options(content=content, style=[style], weights="random", size=400,
                            quiet=True, explain=True))
    job = prepare(opts)
    job.device = Device("gpu")                                 # planned only: nothing runs there
    monkeypatch.setattr(Device, "array_module", lambda self: np)
    monkeypatch.setattr(machine, "measure_matmul_gflops", lambda xp: 100.0)
    options = dict(style_layers=opts.style_layers, content_layers=opts.content_layers)
    on = {name: plan.plan_iteration(job.net, job.content.shape[:2], device=name, **options)
          for name in ("cpu", "gpu")}
    assert on["gpu"].peak_bytes > on["cpu"].peak_bytes         # larger chunks on the GPU
    text = plan_text(opts, job)
    assert f"peak memory estimate                  {format_bytes(on['gpu'].peak_bytes)}" in text
    assert "this GPU's measured" in text
