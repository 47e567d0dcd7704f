"""examples/walkthrough.py runs, prints each step's shapes, and its gradient check can fail."""
import importlib.util
import re
import subprocess
import sys

import numpy as np

import miniautograd as ag
from conftest import ROOT

SCRIPT = ROOT / "examples" / "walkthrough.py"


def run_script():
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def load_module():
    spec = importlib.util.spec_from_file_location("walkthrough", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_walkthrough_runs_and_its_gradients_agree():
    result = run_script()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    checks = re.findall(r"(dL/d\w)\[.*?\]\s+backprop\s+(\S+)\s+finite diff\s+(\S+)", out)
    assert [name for name, _, _ in checks] == ["dL/dW", "dL/dx"], out
    for _, analytic, numeric in checks:
        a, n = float(analytic), float(numeric)
        assert a != 0.0
        assert abs(a - n) <= 1e-6 * abs(a), out
    assert "all gradients agree" in out


def test_walkthrough_prints_every_step_with_the_right_shapes():
    out = run_script().stdout
    m = load_module()
    OH, OW = m.H // 2, m.W // 2                  # pad-1 3x3 conv keeps H, W; the 2x2 pool halves
    expected = [("conv2d", (m.N, m.C, m.H, m.W), (m.N, m.O, m.H, m.W)),
                ("relu", (m.N, m.O, m.H, m.W), (m.N, m.O, m.H, m.W)),
                ("max_pool2d", (m.N, m.O, m.H, m.W), (m.N, m.O, OH, OW)),
                ("gram", (m.N, m.O, OH, OW), (m.N, m.O, m.O)),
                ("sum((G/M - A)^2)", (m.N, m.O, m.O), ())]
    lines = out.splitlines()
    for name, shape_in, shape_out in expected:
        line = next((ln for ln in lines if ln.strip().startswith(name)), None)
        assert line is not None, f"no line for {name} in:\n{out}"
        assert line.rstrip().endswith(f"{shape_in}".ljust(14) + f" -> {shape_out}"), line
    order = "SumSquaredError[5] -> Div[4] -> Gram[3] -> MaxPool2d[2] -> ReLU[1] -> Conv2d[0]"
    assert order in out


def test_the_printed_loss_is_the_loss_of_the_inputs():
    m = load_module()
    x, Wt, b, A = m.make_inputs()
    F = ag.max_pool2d(ag.relu(ag.conv2d(x, Wt, b, pad=1)), 2).data
    Fm = F.reshape(m.N, m.O, -1)                     # (N, O, OH, OW) -> (N, O, OH*OW)
    G = Fm @ Fm.transpose(0, 2, 1)                   # (N, O, M) @ (N, M, O) -> (N, O, O)
    L = np.sum((G / Fm.shape[2] - A) ** 2)
    assert f"loss L = {L:.6f}" in run_script().stdout


def test_a_wrong_backward_makes_the_walkthrough_fail(monkeypatch, capsys):
    m = load_module()
    right = ag.gram.__globals__["Gram"].backward

    def wrong(self, gG):                            # off by 0.1%: must still be caught
        (gx,) = right(self, gG)
        return (1.001 * gx,)

    monkeypatch.setattr(ag.gram.__globals__["Gram"], "backward", wrong)
    assert m.main() == 1
    assert "MISMATCH" in capsys.readouterr().out
