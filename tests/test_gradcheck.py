"""The gradient checker: it accepts right backwards and rejects the wrong ones that matter."""
import importlib
import io
import subprocess
import sys

import numpy as np
import pytest

import miniautograd as ag
from miniautograd.gradcheck import relative_error
from miniautograd.gradcheck.cases import engine_cases, run_cases


class Square(ag.Function):
    """y = x^2 with a backward chosen by ``mistake``: None (right), "ignores gy", or a factor."""

    def __init__(self, mistake=None):
        self.mistake = mistake

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        if self.mistake == "ignores gy":
            return (2 * self.x,)                  # right only when gy is all ones
        factor = 1.0 if self.mistake is None else self.mistake
        return (factor * 2 * self.x * gy,)


class GramForgetsTranspose(ag.Function):
    """G = F F^T with the classic bug dF = 2 gG F: right only when gG is symmetric."""

    def forward(self, x):
        self.x_shape, self.F = x.shape, x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, H*W)
        return self.F @ self.F.swapaxes(1, 2)             # (N, C, C)

    def backward(self, gG):
        return ((2 * gG @ self.F).reshape(self.x_shape),)   # (N, C, H*W) -> (N, C, H, W)


def x_of(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_right_backward_passes():
    result = ag.gradcheck(lambda x: Square()(x), x_of(3, 4))
    assert result.ok and bool(result)
    assert len(result.errors) == 1 and result.max_error < 1e-7
    assert result.out_shape == (3, 4)


def test_backward_that_ignores_gy_is_rejected_only_by_a_random_gy():
    x = x_of(3, 4)
    assert not ag.gradcheck(lambda t: Square("ignores gy")(t), x)
    # with gy all ones the same bug goes unseen: that is why gy is random
    assert ag.gradcheck(lambda t: Square("ignores gy")(t), x, gy=np.ones((3, 4)))


@pytest.mark.parametrize("factor", [2.0, 0.5, -1.0, 1.001])
def test_backward_off_by_a_factor_is_rejected(factor):
    result = ag.gradcheck(lambda t: Square(factor)(t), x_of(2, 5))
    assert not result.ok
    assert result.max_error > result.rtol


def test_gram_without_the_transpose_is_rejected():
    x = x_of(2, 3, 4, 5)
    assert not ag.gradcheck(lambda t: GramForgetsTranspose()(t), x)
    assert ag.gradcheck(ag.gram, x)


def test_errors_are_reported_per_input():
    a, b = x_of(3, 4, seed=1), x_of(3, 4, seed=2)
    result = ag.gradcheck(lambda s, t: Square(2.0)(s) + t, a, b)
    assert result.errors[0] > result.rtol and result.errors[1] < result.rtol
    assert not result.ok


def test_unused_input_has_zero_gradient_and_passes():
    result = ag.gradcheck(lambda s, t: ag.neg(s), x_of(2, 3), x_of(4))
    assert result.ok and result.errors[1] == 0.0


def test_directional_check_accepts_right_and_rejects_wrong():
    x = x_of(4, 6, 5)
    assert ag.gradcheck(lambda t: Square()(t), x, directional=True)
    assert ag.gradcheck(ag.relu, x + np.sign(x) * 0.1, directional=True)
    assert not ag.gradcheck(lambda t: Square(1.01)(t), x, directional=True)
    assert not ag.gradcheck(lambda t: Square("ignores gy")(t), x, directional=True)


def test_the_seed_picks_gy():
    f = lambda t: Square(1.01)(t)                 # noqa: E731
    assert ag.gradcheck(f, x_of(3), seed=1).errors != ag.gradcheck(f, x_of(3), seed=2).errors


def test_relative_error_guards_tiny_denominators():
    err = relative_error(np.array([1e-12, 1.0, 0.0]), np.array([0.0, 1.001, 2e-7]),
                         rtol=1e-4, atol=1e-6)
    assert err[0] == pytest.approx(1e-12 / 1e-2)  # floor atol / rtol, not a division by 0
    assert err[1] == pytest.approx(0.001 / 1.001)
    assert err[2] <= 1e-4                        # |a - n| below atol passes


def test_float32_inputs_are_refused():
    with pytest.raises(TypeError, match="float64"):
        ag.gradcheck(ag.neg, np.ones(3, dtype=np.float32))


def test_f_must_return_a_tensor():
    with pytest.raises(TypeError, match="Tensor"):
        ag.gradcheck(lambda t: t.data, x_of(3))


def test_runner_table_marks_a_broken_op_and_an_exception_as_fail():
    def explode(t):
        raise ValueError("boom")
    cases = [("square", lambda t: Square()(t), [x_of(2, 3)]),
             ("square x2", lambda t: Square(2.0)(t), [x_of(2, 3)]),
             ("explode", explode, [x_of(2)])]
    out = io.StringIO()
    assert not run_cases(cases, out=out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("square ") and lines[1].endswith("pass")
    assert lines[2].startswith("square x2") and lines[2].endswith("FAIL")
    assert "FAIL (ValueError: boom)" in lines[3]
    assert run_cases(cases[:1], out=io.StringIO())


def test_runner_covers_every_op():
    labels = " ".join(case[0] for case in engine_cases(np.random.default_rng(0)))
    for op in ["add", "sub", "mul", "div", "neg", "power", "sum", "mean", "reshape", "transpose",
               "matmul", "relu", "gram", "sum_squared_error", "total_variation", "conv2d",
               "avg_pool2d", "max_pool2d"]:
        assert op in labels
    for pad in ["pad=1", "pad=(1, 2)", "pad=(0, 1, 2, 1)"]:
        assert f"stride=2 {pad} " in labels and f"stride=2 {pad} bias" in labels


def test_module_main_exits_0_and_prints_the_table():
    result = subprocess.run([sys.executable, "-m", "miniautograd.gradcheck"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""          # e.g. no runpy warning about the module being imported twice
    assert "FAIL" not in result.stdout
    assert result.stdout.count(" pass") >= 30


def test_main_returns_1_when_an_op_fails(monkeypatch, capsys):
    module = importlib.import_module("miniautograd.gradcheck.cases")
    monkeypatch.setattr(module, "engine_cases",
                        lambda rng: [("square x2", lambda t: Square(2.0)(t), [x_of(2, 3)])])
    assert module.main([]) == 1
    assert "FAIL" in capsys.readouterr().out
