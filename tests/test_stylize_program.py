"""stylize as a program: Ctrl-C, checkpoints and resume, NaN, early stop, printing, --explain,
--trace, and ``python -m minivgg.stylize`` itself. Tiny VGG-19-shaped .mat, 32 px."""
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from minivgg import losses
from minivgg.stylize.__main__ import main
from test_stylize_run import pixels, read_log, run


def python_m(*args, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "minivgg.stylize", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# -- the module as a program ----------------------------------------------------------------------
def test_python_m_runs_without_runpy_warning_and_refuses_in_one_line(tmp_path):
    help_ = python_m("--help", cwd=tmp_path)
    out, err = help_.communicate(timeout=60)
    assert help_.returncode == 0 and "--style-blend-weights" in out and err == ""
    bad = python_m("nope.jpg", "style.jpg", cwd=tmp_path)
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and out == ""
    assert err.splitlines() == ["error: the image 'nope.jpg' does not exist; check the path and "
                                "its spelling"]


def test_ctrl_c_saves_the_image_so_far_and_exits_130(tiny_mat, images, tmp_path):
    content, style = images
    proc = python_m(content, style, "--weights", tiny_mat, "--size", 32, "--iterations", 10 ** 6,
                    "--log", "run.csv", "-o", "out.png", "--quiet", cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (
            (tmp_path / "run.csv").exists() and len(read_log(tmp_path / "run.csv")) > 3):
        time.sleep(0.05)                                   # until a few iterations are done
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at iteration" in err and "saved the image so far to out.png" in err
    assert "Traceback" not in err
    with Image.open(tmp_path / "out.png") as img:
        img.load()                                         # a complete PNG
        assert img.size == (32, 24)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_resume_continues_with_the_optimiser_state(tiny_mat, images, tmp_path, optimizer):
    opt = ["--optimizer", optimizer, "--init", "noise"]
    assert run(tiny_mat, images, *opt, "-o", "full.png", iterations=6) == 0
    assert run(tiny_mat, images, *opt, "-o", "part.png", "--checkpoint-every", "3",
               "--log", "part.csv", iterations=3) == 0
    assert (tmp_path / "part_0003.png").exists() and (tmp_path / "part_0003.state.npz").exists()
    assert run(tiny_mat, images, *opt, "-o", "part.png", "--resume", "--log", "part.csv",
               iterations=6) == 0
    # the same six iterations as one uninterrupted run: the state was restored, not restarted
    assert (tmp_path / "part.png").read_bytes() == (tmp_path / "full.png").read_bytes()
    assert [r[0] for r in read_log(tmp_path / "part.csv")[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_resume_refuses_a_checkpoint_of_another_run(tiny_mat, images, capsys):
    assert run(tiny_mat, images, "-o", "o.png", "--checkpoint-every", "2", iterations=2) == 0
    capsys.readouterr()
    assert run(tiny_mat, images, "-o", "o.png", "--resume", "--size", "40", iterations=4) == 2
    assert "resume with the same images and --size" in capsys.readouterr().err
    assert run(tiny_mat, images, "-o", "o.png", "--resume", "--optimizer", "adam") == 2
    assert "resume with the same optimizer" in capsys.readouterr().err
    assert run(tiny_mat, images, "-o", "o.png", "--resume", iterations=2) == 2
    assert "raise --iterations to go on" in capsys.readouterr().err


def test_checkpoint_names_have_enough_digits(tiny_mat, images, tmp_path):
    assert run(tiny_mat, images, "-o", "o.png", "--checkpoint-every", "2", iterations=4) == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("o_"))
    assert names == ["o_0002.png", "o_0002.state.npz", "o_0004.png", "o_0004.state.npz"]
    assert (tmp_path / "o_0004.png").read_bytes() == (tmp_path / "o.png").read_bytes()


def test_non_finite_loss_stops_at_the_last_finite_image(tiny_mat, images, tmp_path, capsys,
                                                        monkeypatch):
    adam = ["--optimizer", "adam", "--init", "noise"]
    assert run(tiny_mat, images, *adam, "-o", "two.png", iterations=2) == 0
    calls = []
    real = losses.Objective.value_and_grad

    def poisoned(self, x):
        calls.append(1)
        total, grad, parts = real(self, x)
        return (float("nan"), grad, parts) if len(calls) == 4 else (total, grad, parts)

    # Adam evaluates x0 once, then once per step: the 4th evaluation is iteration 3's
    monkeypatch.setattr(losses.Objective, "value_and_grad", poisoned)
    capsys.readouterr()
    assert run(tiny_mat, images, *adam, "-o", "nan.png", iterations=10) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the loss became NaN or infinite at iteration 3" in err[0]
    assert "lower --learning-rate" in err[0]
    assert (tmp_path / "nan.png").read_bytes() == (tmp_path / "two.png").read_bytes()


def test_tol_stops_early_and_says_so(tiny_mat, images, tmp_path, capsys):
    assert run(tiny_mat, images, "--tol", "0.5", "--tol-window", "2", "--log", "l.csv",
               "--init", "noise", iterations=50) == 0
    rows = read_log(tmp_path / "l.csv")[1:]
    assert 3 <= len(rows) < 50
    # --quiet hides notices, so run again without it to read the sentence
    assert main([str(a) for a in [*images, "--weights", tiny_mat, "--size", 32, "--iterations",
                                  50, "--tol", 0.5, "--tol-window", 2, "--init", "noise"]]) == 0
    assert f"stopped early at iteration {len(rows)}" in capsys.readouterr().err


def test_print_every_quiet_and_the_device_line(tiny_mat, images, capsys):
    assert run(tiny_mat, images, "--print-every", "2", iterations=4) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == ["iteration 2", "iteration 4"]
    assert "= content" in out and err == ""                       # --quiet: nothing on stderr
    assert main([str(a) for a in [*images, "--weights", tiny_mat, "--size", 32,
                                  "--iterations", 2]]) == 0
    err = capsys.readouterr().err
    assert "device: CPU (NumPy)" in err or "device: GPU" in err   # auto says what it chose
    assert "2/2" in err and "wrote content_stylized.png" in err  # the progress bar ran


def test_explain_prints_the_plan_and_writes_nothing(images, tmp_path, capsys):
    assert main([str(a) for a in [*images, "--weights", "random", "--size", 512, "--explain",
                                  "--quiet"]]) == 0
    out = capsys.readouterr().out
    assert "conv5_1" in out and "361,152 per pixel" in out and "peak memory estimate" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def test_trace_shows_each_op_forward_and_backward(tiny_mat, images, capsys):
    assert run(tiny_mat, images, "--trace", iterations=1) == 0
    out = capsys.readouterr().out
    forward, backward = out.split("backward total")[0].split("\nbackward ")
    for op, layer in (("Conv2d", "conv1_1"), ("ReLU", "relu4_2"), ("AvgPool2d", "pool4"),
                      ("Gram", ""), ("SumSquaredError", ""), ("TotalVariation", "")):
        assert op in forward and op in backward and layer in forward
    assert "1x3x24x32" in forward and "forward total" in out


def test_random_weight_fallback_and_full_vgg(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("minivgg.vgg.find_weights", lambda path=None: None)
    content, style = images
    assert main([str(a) for a in [content, style, "--size", 32, "--iterations", 1]]) == 0
    err = capsys.readouterr().err
    assert err.count("random weights") == 1
    assert pixels(tmp_path / "content_stylized.png").shape == (24, 32, 3)


def test_lbfgs_stops_when_no_step_lowers_the_loss(tiny_mat, images, tmp_path, capsys):
    # content loss only, starting at the content: the gradient is 0 and L-BFGS cannot move
    argv = [*images, "--weights", tiny_mat, "--size", 32, "--iterations", 50, "--style-weight",
            0, "--tv-weight", 0, "--log", "l.csv"]
    assert main([str(a) for a in argv]) == 0
    assert "stopped at iteration 1: L-BFGS found no step" in capsys.readouterr().err
    assert len(read_log(tmp_path / "l.csv")) == 2


def test_trace_gives_the_gradient_of_a_plain_iteration(tiny_mat, capsys):
    import numpy as np
    from minivgg import load_vgg19
    from minivgg.stylize.trace import print_trace
    net = load_vgg19(tiny_mat)
    rng = np.random.default_rng(0)
    content, style = (rng.uniform(-100, 100, (1, 3, 24, 32)).astype(np.float32) for _ in "cs")
    c_layers, s_layers = ["relu4_2"], ["relu1_1", "relu3_1", "relu5_1"]
    objective = losses.Objective(
        net, losses.content_targets(net, content, c_layers),
        losses.style_targets(net, [style], s_layers), losses.layer_weights(s_layers),
        content_weight=5.0, style_weight=0.1, tv_weight=0.01)
    x = rng.uniform(-100, 100, (1, 3, 24, 32)).astype(np.float32)
    _, expected, _ = objective.value_and_grad(x)
    traced = print_trace(objective, x)
    np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=0)
    assert "relu4_2" in capsys.readouterr().out
