"""Smoke tests of bench/ at tiny sizes: the scripts run, print their tables, and fail clearly.

PyTorch is not needed: the comparison is tested only where it is installed.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench_accuracy  # noqa: E402
import bench_iteration  # noqa: E402
import bench_layers  # noqa: E402
import common  # noqa: E402
import miniautograd as ag  # noqa: E402


def run_script(name, *args, block=()):
    """Run bench/<name> in a fresh Python with the modules in ``block`` made unimportable."""
    code = ("import runpy, sys\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
            + f"sys.argv = [{name!r}] + {list(args)!r}\n"
            + f"runpy.run_path({str(ROOT / 'bench' / name)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def net():
    return common.build_network(seed=0)


def test_bench_iteration_prints_times_and_rates(capsys):
    bench_iteration.main(["--sizes", "16", "24", "--repeats", "1", "--no-memory"])
    out = capsys.readouterr().out
    assert "float32 matmul rate:" in out and "minivgg s/iter" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["16"], ["24"])]
    assert [row[0] for row in rows] == ["16", "24"]
    for row in rows:
        assert float(row[2]) > 0 and row[3] == "s"           # the median, then "s"
        assert float(row[5]) > 0                              # GFLOP/s
    assert "time ~ pixels^k from 16 to 24 px" in out


def test_memory_worker_reports_growth_in_a_fresh_process():
    result = run_script("bench_iteration.py", "--memory-worker", "minivgg", "--sizes", "16")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["growth"] > 0 and isinstance(report["reset"], bool)


def test_problem_step_matches_the_objective(net):
    problem = common.make_problem(net, (20, 28), seed=3)
    loss, grad = problem.step()
    assert np.isfinite(loss) and grad.shape == (1, 3, 20, 28) and np.all(np.isfinite(grad))
    content, style, x = common.random_images((20, 28), seed=3)     # seeded: the same images
    assert np.array_equal(problem.content, content) and np.array_equal(problem.x, x)


def test_bench_layers_lists_layers_with_matmul_share(capsys):
    bench_layers.main(["--size", "16", "--repeats", "1", "--deepest", "relu2_1"])
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line[:4] in ("conv", "relu", "pool")]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    algorithms = [line.split()[-1] for line in out.splitlines() if line.startswith("conv")]
    assert algorithms == ["im2col", "shifted", "shifted"]       # C = 3, then 64 channels
    assert "total fwd:" in out and "outside the matrix products" in out


def test_bench_accuracy_gives_each_algorithm_error_per_convolution(net, capsys):
    rows = bench_accuracy.per_layer(net, 16, "conv2_2")
    assert [r["name"] for r in rows] == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert [r["chosen"] for r in rows] == ["im2col", "shifted", "shifted", "winograd4"]
    assert bench_accuracy.ALGORITHMS == ("im2col", "shifted", "winograd", "winograd4")
    errors = [r[a] for r in rows for a in bench_accuracy.ALGORITHMS]
    assert all(0 <= e < 1e-5 for e in errors) and max(errors) > 0      # float32, not float64
    lines = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("conv")]                # name, C, ->, O, input, then the cells
    starred = [[cell.endswith("*") for cell in line[5:9]].index(True) for line in lines]
    assert starred == [0, 1, 1, 3]                      # im2col, shifted, shifted, winograd4


def test_relative_rms_and_gradient_error():
    exact = np.arange(1.0, 5.0)
    assert bench_accuracy.relative_rms(exact * (1 + 1e-3), exact) == pytest.approx(1e-3)
    assert bench_iteration.gradient_difference(exact * 1.01, exact) == pytest.approx(1e-2)


def test_bench_accuracy_gradients_against_torch_float64(net):
    torch = pytest.importorskip("torch")
    table = bench_accuracy.gradients(net, 24, 2, torch)
    assert len(table) == 2
    for torch32, ours, ours_vs_torch32 in table:
        assert 0 < torch32 < 1e-3 and 0 < ours < 1e-3 and 0 < ours_vs_torch32 < 1e-3


def test_bench_accuracy_problems_without_torch_says_how_to_install():
    result = run_script("bench_accuracy.py", "--problems", "1", "--size", "16", block=["torch"])
    assert result.returncode == 2 and "needs PyTorch" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", [bench_accuracy, bench_layers])
def test_an_unknown_deepest_layer_is_one_sentence(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--size", "16", "--deepest", "conv9_9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: there is no layer 'conv9_9'; use one of conv1_1, ")
    assert err.count("\n") == 1


def test_matmul_times_cover_every_chunk():
    forward, backward = bench_layers.matmul_times((1, 8, 12, 10), (16, 8, 3, 3), np, 2)
    assert len(forward) == len(backward) == 2 and min(forward + backward) > 0


@pytest.mark.parametrize("script, args", [
    ("gpu_check.py", ["--no-tests"]),
    ("bench_iteration.py", ["--device", "gpu", "--sizes", "16"]),
    ("bench_layers.py", ["--device", "gpu", "--size", "16"])])
def test_without_cupy_the_gpu_scripts_say_so(script, args):
    result = run_script(script, *args, block=["cupy"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "CuPy" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("script, args", [("bench_iteration.py", ["--sizes", "16"]),
                                          ("bench_layers.py", ["--size", "16"])])
def test_compare_torch_without_torch_says_how_to_install(script, args):
    result = run_script(script, "--compare", "torch", *args, block=["torch"])
    assert result.returncode == 2 and "needs PyTorch" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_torch_layer_is_each_layer_of_minivgg(pooling):
    """The per-layer reference computes what net.apply does, layer by layer down to pool2, and a
    convolution with unequal pads (F.pad first) what ag.conv2d does."""
    torch = pytest.importorskip("torch")
    from minivgg.matfile import LayerSpec
    F, net = torch.nn.functional, common.build_network(seed=2, pooling=pooling)
    h = np.random.default_rng(0).standard_normal((1, 3, 18, 14), dtype=np.float32)
    for spec in net.layers[:net.layer_names.index("pool2") + 1]:
        W, b = ([torch.from_numpy(p.data) for p in net.params[spec.name]]
                if spec.kind == "conv" else (None, None))
        theirs = bench_iteration.torch_layer(F, spec, torch.from_numpy(h), W, b, pooling)
        h = net.apply(spec, ag.Tensor(h)).data
        np.testing.assert_allclose(theirs.numpy(), h, rtol=1e-4, atol=1e-3 * abs(h).max())
    spec = LayerSpec("conv", "conv", (3, 3, 2, 4), (0, 1, 2, 0), (1, 1))
    x, W = (np.random.default_rng(1).standard_normal(s, dtype=np.float32)
            for s in ((1, 2, 5, 6), (4, 2, 3, 3)))
    theirs = bench_iteration.torch_layer(F, spec, torch.from_numpy(x), torch.from_numpy(W), None,
                                         pooling)
    ours = ag.conv2d(ag.Tensor(x), ag.Tensor(W), pad=spec.pad).data
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-5, atol=1e-5)


def test_bench_layers_compares_each_layer_with_torch(capsys):
    pytest.importorskip("torch")
    bench_layers.main(["--size", "16", "--repeats", "1", "--deepest", "relu1_2",
                       "--compare", "torch"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:4] in ("conv", "relu")]
    assert len(rows) == 4
    for row in rows:                          # ... '0.8', '/', '0.9', 'ms', ratio
        assert row[-4] == "/" and row[-2] == "ms" and float(row[-1]) > 0
    assert "minivgg / PyTorch:" in out


def test_tf32_needs_the_gpu_and_cupy_tf32():
    with pytest.raises(SystemExit):
        bench_iteration.parse_args(["--tf32"])


def test_torch_reference_agrees_with_minivgg(net):
    torch = pytest.importorskip("torch")
    problem = common.make_problem(net, (24, 20), seed=1)
    reference = bench_iteration.TorchProblem(bench_iteration.import_torch("cpu"), problem, "cpu")
    loss_error, grad_error = bench_iteration.agreement(problem.step(), reference.step())
    assert loss_error < 1e-4 and grad_error < 1e-4
    assert torch.get_num_threads() == common.cpu_threads()


def test_alternating_engines_each_step_after_a_pause(monkeypatch):
    """Each step of alternating engines waits first (the other's spinning threads would slow it);
    a lone engine does not wait."""
    events = []
    monkeypatch.setattr(bench_iteration.time, "sleep", lambda s: events.append(("sleep", s)))
    engines = {name: (lambda name=name: events.append(name), None) for name in ("a", "b")}
    times = bench_iteration.time_alternating(engines, 2, settle=0.25)
    assert [len(t) for t in times.values()] == [2, 2]
    assert events == [("sleep", 0.25), "a", ("sleep", 0.25), "b"] * 3   # warm-up, 2 timed rounds
    events.clear()
    bench_iteration.time_alternating({"a": engines["a"]}, 2, settle=0.25)
    assert events == ["a"] * 3


def test_layer_engines_alternate_run_by_run_after_a_pause(monkeypatch):
    events = []
    monkeypatch.setattr(bench_iteration.time, "sleep", lambda s: events.append("pause"))
    engines = {name: (lambda name=name: events.append(name + " fwd"),
                      lambda name=name: events.append(name + " bwd"), None) for name in "ab"}
    times = bench_layers.step_times(engines, 2)
    assert [len(t) for pair in times.values() for t in pair] == [2] * 4
    warm_up = ["a fwd", "a bwd", "b fwd", "b bwd"]
    rounds = ["pause", "a fwd", "a fwd", "a bwd", "pause", "b fwd", "b fwd", "b bwd"] * 2
    assert events == warm_up + rounds                # an untimed forward after each pause


def test_paired_ratios_divide_out_a_drift_between_rounds():
    ours, theirs = [1.0, 2.0, 4.0], [1.25, 2.5, 5.0]        # the machine slowed 2x, then 2x
    assert bench_iteration.paired_ratios(ours, theirs) == (0.8, 0.8, 0.8)
    assert bench_iteration.paired_ratios([1.0, 3.0], [2.0, 2.0]) == (1.0, 0.5, 1.5)


def test_helpers(tmp_path):
    pixels = np.array([256, 512, 1024]) ** 2
    assert common.fitted_exponent(pixels, 3e-6 * pixels ** 1.3) == pytest.approx(1.3)
    assert common.summary([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert common.format_time([1.0, 2.0, 3.0]) == "2.000 s (1.000-3.000)"
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    assert common.proc_status_bytes("VmHWM", status) == 2048 * 1024
    assert common.proc_status_bytes("VmSwap", status) is None
    assert common.peak_rss_bytes() > 0
    assert common.seconds(lambda: None) >= 0



def test_bench_tiled_measures_the_same_loss_and_holds_the_optimiser_state():
    """bench_tiled: the tiled loss is the untiled one, and a fresh process's peak counts the
    L-BFGS history it is told to hold (20 pairs of 3 x 256 x 256 float32 arrays, 30 MiB: with
    glibc's default, release=True, each is large enough to be its own mapping, so it cannot reuse
    memory the targets freed; release=True also leaves this process's malloc as it is)."""
    import bench_tiled
    untiled = bench_tiled.measure((64, 64), None, 1, release=True)
    tiled = bench_tiled.measure((64, 64), 32, 1, release=True)
    assert tiled["loss"] == pytest.approx(untiled["loss"], rel=1e-5)
    without, holding = (bench_tiled.in_fresh_process((256, 256), None, 1, history, True)["peak"]
                        for history in (0, 20))
    assert holding - without > 28 * 2 ** 20


def test_bench_tiled_chooses_as_the_program_does():
    """bench_tiled's tile and precision are tile_plan.choose_tile_and_history's: at 2048 px under
    2 GiB the pairs go to float16 and the tiles grow; forced to full precision they are smaller."""
    import bench_tiled
    auto = bench_tiled.chosen_tile((2048, 2048), 2 * 2 ** 30, 10, "auto")
    full = bench_tiled.chosen_tile((2048, 2048), 2 * 2 ** 30, 10, "full")
    assert auto[1] and not full[1] and auto[0] > full[0]
    assert auto[2] <= 2 * 2 ** 30 and full[2] <= 2 * 2 ** 30
