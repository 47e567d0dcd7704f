"""Every option of the program over the coarse-to-fine schedule (issue 11: "every existing option
still works with it, tests for each").

Each option runs on the tiny net over three scales (24, 34 and 48 px, two iterations each), and
must pass through every scale (the log's size column), save a 48 px picture, and, where the option
changes the objective or the picture, save another picture than the schedule without it (an
option lost on its way into the scales' objectives would give the same bytes). Options with a test
of their own over the schedule are not repeated here: --log, --save-scales, --print-every (in
test_schedule.py's first run), --init, --average, --resume, --checkpoint-every, --tol,
--explain (test_schedule.py), --style-masks (test_masks.py), --tile and --max-memory's tiling
(test_tiled_program.py).
"""
import pytest
from PIL import Image

from test_schedule import multi
from test_stylize_run import pixels, read_log


def scheduled(tiny_mat, images, tmp_path, *option, iterations=2):
    """Run the schedule with ``option``; return the saved picture's bytes after the checks."""
    assert multi(tiny_mat, images, "-o", "o.png", "--log", "l.csv", *option,
                 iterations=iterations) == 0
    sizes = ["24", "24", "34", "34"] + ["48"] * iterations   # the log's size column
    assert [row[6] for row in read_log(tmp_path / "l.csv")[1:]] == sizes
    out = pixels(tmp_path / "o.png")
    assert out.shape == (36, 48, 3)
    return out.tobytes()


@pytest.fixture
def without(tiny_mat, images, tmp_path):
    """The schedule's picture with no option, saved aside."""
    return scheduled(tiny_mat, images, tmp_path)


@pytest.mark.parametrize("option", [
    ["--optimizer", "adam", "--learning-rate", "2"],
    ["--content-weight", "50"],
    ["--style-weight", "10"],
    ["--tv-weight", "100"],            # 0 against the default 0.01: the same 8-bit picture here
    ["--style-loss", "meancov"],
    ["--content-layers", "relu3_1"],
    ["--style-layers", "relu1_1,relu3_1"],
    ["--style-layer-weights", "4,1,1,1,1"],
    ["--style-scale", "2"],
    ["--pooling", "max"],
    ["--preserve-colors"],
    ["--match-colors"],
    ["--lbfgs-history-precision", "half"],
    ["--init", "noise", "--seed", "3"],
], ids=lambda option: option[0])
def test_an_option_changes_the_schedules_picture(tiny_mat, images, tmp_path, without, option):
    assert scheduled(tiny_mat, images, tmp_path, *option) != without


def test_lbfgs_history_over_the_schedule(tiny_mat, images, tmp_path):
    # the history restarts at each scale, so M = 1 and the default 10 first differ at the third
    # iteration of a scale, where M = 1 has forgotten the first pair
    default = scheduled(tiny_mat, images, tmp_path, iterations=3)
    assert scheduled(tiny_mat, images, tmp_path, "--lbfgs-history", "1", iterations=3) != default


def test_two_styles_and_their_blend_weights(tiny_mat, images, tmp_path, without):
    content, style = images
    Image.fromarray(255 - pixels(style)).save(tmp_path / "negative.png")    # another style
    even = scheduled(tiny_mat, images, tmp_path, "negative.png")
    blended = scheduled(tiny_mat, images, tmp_path, "negative.png", "--style-blend-weights", "3,1")
    assert len({without, even, blended}) == 3


@pytest.mark.parametrize("option", [
    ["--device", "cpu"],
    ["--max-memory", "8G"],               # fits: runs untiled, as without
    ["--trace"],
], ids=lambda option: option[0])
def test_an_option_that_leaves_the_picture_alone(tiny_mat, images, tmp_path, without, option):
    assert scheduled(tiny_mat, images, tmp_path, *option) == without
