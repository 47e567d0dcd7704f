"""The GPU check: CuPy's test leg, CuPy against NumPy on VGG-19, and times against PyTorch CUDA.

    python bench/gpu_check.py                      # on a machine with an NVIDIA GPU and CuPy
    python bench/gpu_check.py --sizes 256 --repeats 3 --no-tests

1. Runs the test suite's CuPy leg, ``python -m pytest -q -m gpu tests`` (the ``xp`` fixture's
   cupy cases and the tests marked gpu).
2. At each size, one iteration (loss and gradient with respect to the image, VGG-19 with seeded
   random weights, the losses of common.py) on NumPy and on CuPy, from the same weights and
   images: the relative errors of the loss and of the gradient must stay below 1e-4 (float32).
3. Times the iteration with NumPy (CPU), CuPy, and, when PyTorch with CUDA is installed, PyTorch
   on the GPU in strict float32 (TF32 off, cuDNN's fastest algorithms), alternating; medians of
   ``--repeats`` runs after a warm-up, with the spread.
4. Prints a short table with the GPU, CuPy and CUDA versions, for bench/README.md.

Exits with status 2 and one sentence where CuPy or a GPU is missing, 1 when a check fails.
For TF32 timings use ``CUPY_TF32=1 python bench/bench_iteration.py --device gpu --tf32 ...``.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_iteration  # noqa: E402
import common  # noqa: E402
import miniautograd as ag  # noqa: E402

TOLERANCE = 1e-4     # relative, float32 on two devices (sums in different orders)


def run_gpu_tests():
    """Run the CuPy leg of the tests; (passed, its summary line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(HERE.parent / "tests")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    lines = result.stdout.strip().splitlines() or ["(no output)"]
    return result.returncode == 0, lines[-1]


def relative_errors(cpu, gpu):
    """(|loss difference| / |loss|, ||gradient difference|| / ||gradient||), CPU as reference."""
    (loss, grad), (gpu_loss, gpu_grad) = cpu, gpu
    g, gg = np.asarray(grad, dtype=np.float64), ag.to_cpu(gpu_grad).astype(np.float64)
    return abs(gpu_loss - loss) / abs(loss), np.linalg.norm(gg - g) / np.linalg.norm(g)


def check_size(size, args, cupy, torch):
    """The errors and the timings at one size, as a dict."""
    cpu = common.make_problem(common.build_network(seed=args.seed), (size, size), seed=args.seed)
    gpu = common.make_problem(common.build_network(device="gpu", seed=args.seed), (size, size),
                              xp=cupy, seed=args.seed)
    row = {"size": size, "errors": relative_errors(cpu.step(), gpu.step())}
    engines = {"numpy": (cpu.step, None), "cupy": (gpu.step, common.device_sync(cupy))}
    if torch is not None:
        reference = bench_iteration.TorchProblem(torch, gpu, "gpu")
        engines["torch"] = (reference.step, torch.cuda.synchronize)
    row.update(bench_iteration.time_alternating(engines, args.repeats))
    row["flop"] = common.iteration_plan(gpu.net, (size, size)).flop
    return row


def optional_torch():
    """PyTorch set up for the GPU in strict float32, or None (with a line saying why)."""
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: no PyTorch timings")
        return None
    if not torch.cuda.is_available():
        print("this PyTorch build sees no CUDA device: no PyTorch timings")
        return None
    return bench_iteration.import_torch("gpu", tf32=False)


def print_table(rows, rate, torch):
    print(f"\n{'size':>5}{'loss err':>10}{'grad err':>10}  {'numpy s/iter':<22}"
          f"{'cupy s/iter':<22}{'of mm':>6}" + (f"  {'torch s/iter':<22}{'cupy/torch':>10}"
                                                 if torch is not None else ""))
    for row in rows:
        loss, grad = row["errors"]
        cupy_median = common.summary(row["cupy"])[0]
        share = row["flop"] / cupy_median / 1e9 / rate
        line = (f"{row['size']:>5}{loss:>10.1e}{grad:>10.1e}  "
                f"{common.format_time(row['numpy']):<22}{common.format_time(row['cupy']):<22}"
                f"{share:>6.2f}")
        if torch is not None:
            ratio = cupy_median / common.summary(row["torch"])[0]
            line += f"  {common.format_time(row['torch']):<22}{ratio:>10.2f}"
        print(line)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tests", action="store_true", help="skip the CuPy test leg")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cupy = common.device_module("gpu")        # exits with one sentence without CuPy or a GPU
    print("\n".join(common.machine_lines("gpu", cupy)))
    tests_ok, summary = (True, "skipped") if args.no_tests else run_gpu_tests()
    print(f"CuPy test leg (pytest -m gpu): {summary}")
    torch = optional_torch()
    if torch is not None:
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, strict float32")
    rate = common.matmul_rate(cupy)
    print(f"GPU float32 matmul rate: {rate:.0f} GFLOP/s ('of mm': CuPy's share of it)")
    rows = [check_size(size, args, cupy, torch) for size in args.sizes]
    print_table(rows, rate, torch)
    errors_ok = all(max(row["errors"]) < TOLERANCE for row in rows)
    print(f"\nCuPy matches NumPy (relative error < {TOLERANCE:g}): {'yes' if errors_ok else 'NO'}; "
          f"test leg: {'passed' if tests_ok else 'FAILED'}")
    return 0 if errors_ok and tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
