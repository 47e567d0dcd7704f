"""What the benchmarks share: the problem (VGG-19 and the style-transfer loss), clocks, memory.

Run the scripts from the project root, e.g. ``python bench/bench_iteration.py``; they import this
file as ``common``. They rely on minivgg (``load_vgg19("random")``, the ``Objective`` of
minivgg.losses that ``stylize`` optimises, the cost model of minivgg.plan) and, only for
``--compare torch``, on PyTorch (see bench_iteration.py).

One iteration = the loss and its gradient with respect to the image: the forward pass down to
relu5_1, the style terms (Gram matrices) on relu1_1 ... relu5_1, the content term on relu4_2, the
total variation, and backpropagation to the image only (the weights are frozen).
"""
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

import miniautograd as ag
from miniautograd.backend import synchronize
from minivgg import machine, plan
from minivgg.losses import Objective, content_targets, layer_weights, style_targets

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)
DEEPEST = "relu5_1"
LOSS_WEIGHTS = dict(content_weight=1.0, style_weight=1.0, tv_weight=1.0)


def fail(sentence):
    """Print ``error: <sentence>`` to stderr and exit with status 2, as minivgg's programs do."""
    print(f"error: {sentence}", file=sys.stderr)
    raise SystemExit(2)


def require_layer(net, name):
    """Exit with one sentence unless ``name`` is a layer of ``net`` (a --deepest option)."""
    if name not in net.layer_names:
        fail(f"there is no layer {name!r}; use one of {', '.join(net.layer_names)}")


def device_module(device):
    """numpy for "cpu", cupy for "gpu"; exits with one sentence when there is no GPU."""
    if device == "cpu":
        return np
    try:
        return ag.require_gpu()
    except RuntimeError as exc:
        fail(str(exc))


def build_network(*, device="cpu", seed=0, pooling="avg"):
    """VGG-19 with seeded random weights (no download needed), on ``device``."""
    from minivgg.vgg import load_vgg19
    net = load_vgg19("random", pooling=pooling, seed=seed)
    if device == "gpu":
        net.to_gpu()
    return net


def random_images(size, *, seed=0):
    """Three (1, 3, H, W) float32 arrays in preprocessed units: content, style, start image."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-120, 135, size=(1, 3) + tuple(size)).astype(np.float32)
            for _ in range(3)]


@dataclass
class Problem:
    """One style-transfer problem: the network, its objective, the image x being optimised."""
    net: object
    objective: Objective
    x: object            # (1, 3, H, W) array on the problem's device
    content: np.ndarray  # the images, on the CPU, for a reference implementation to copy
    style: np.ndarray
    xp: object

    def step(self):
        """One iteration: (loss, dL/dx)."""
        total, grad, _parts = self.objective.value_and_grad(self.x)
        return total, grad


def make_problem(net, size, *, xp=np, seed=0):
    """The Problem at ``size`` = (H, W) on ``xp``'s device, with random content and style."""
    content, style, x = random_images(size, seed=seed)
    to_device = (lambda a: a) if xp is np else xp.asarray
    objective = Objective(net, content_targets(net, to_device(content), CONTENT_LAYERS),
                          style_targets(net, [to_device(style)], STYLE_LAYERS),
                          layer_weights(STYLE_LAYERS), **LOSS_WEIGHTS)
    return Problem(net, objective, to_device(x), content, style, xp)


def iteration_plan(net, size):
    """minivgg.plan's cost model of one iteration (its FLOP include the Gram matrices)."""
    return plan.plan_iteration(net, tuple(size), deepest=DEEPEST, style_layers=STYLE_LAYERS,
                               content_layers=CONTENT_LAYERS)


# -- clocks ----------------------------------------------------------------------------------------
def seconds(fn, sync=None):
    """Wall-clock seconds of fn(); ``sync()`` (waiting for the GPU) runs before both readings."""
    sync = sync or (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def device_sync(xp):
    """A function that waits for xp's queued work: the CuPy stream, or nothing on NumPy."""
    return lambda: synchronize(xp)


def summary(times):
    """(median, min, max) of a list of seconds."""
    return statistics.median(times), min(times), max(times)


def format_time(times):
    """'1.234 s (1.20-1.30)': the median and the spread of several runs."""
    median, low, high = summary(times)
    return f"{median:.3f} s ({low:.3f}-{high:.3f})"


def fitted_exponent(pixels, times):
    """k in time ~ pixels^k, by least squares on the logarithms."""
    slope, _ = np.polyfit(np.log(pixels), np.log(times), 1)
    return float(slope)


# -- memory ----------------------------------------------------------------------------------------
def proc_status_bytes(field, path="/proc/self/status"):
    """A 'kB' line of /proc/self/status (VmRSS, VmHWM) in bytes; None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """The process's peak resident memory: VmHWM, or ru_maxrss where /proc is missing."""
    peak = proc_status_bytes("VmHWM")
    if peak is None:
        import resource
        scale = 1 if sys.platform == "darwin" else 1024        # bytes on macOS, kB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return peak


# -- the machine -----------------------------------------------------------------------------------
def cpu_threads():
    """The thread count NumPy's BLAS uses: its environment variables, else the usable CPUs."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_name():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:            # older NumPy: no dict mode
        return "unknown BLAS"


def machine_lines(device, xp):
    """A few lines that say what was measured where."""
    lines = [f"date: {time.strftime('%Y-%m-%d %H:%M')}",
             f"python {platform.python_version()}, numpy {np.__version__} ({blas_name()})",
             f"cpu: {cpu_name()}, {cpu_threads()} threads"]
    if device == "gpu":
        name = xp.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        lines.append(f"gpu: {name}, cupy {xp.__version__}, "
                     f"CUDA runtime {xp.cuda.runtime.runtimeGetVersion()}")
    return lines


def freed_memory(release):
    """Handle freed memory as ``python -m minivgg.stylize`` does (machine.keep_freed_memory),
    or, with ``release`` (the scripts' --release-memory), leave glibc's default; a line saying
    which, for the report."""
    if release:
        return "freed memory: returned to the system (glibc's default, --release-memory)"
    if machine.keep_freed_memory():
        return "freed memory: kept for reuse (machine.keep_freed_memory, as the program does)"
    return "freed memory: the C library's default (not glibc: nothing to set)"


def add_release_memory(parser):
    """The scripts' --release-memory flag (see freed_memory)."""
    parser.add_argument("--release-memory", action="store_true",
                        help="leave glibc's default: return freed arrays to the system, as "
                             "before machine.keep_freed_memory (for comparison)")


def matmul_rate(xp):
    """The machine's float32 matmul rate in GFLOP/s (n = 1024 on the CPU, 4096 on the GPU)."""
    return machine.measure_matmul_gflops(xp, repeats=5)
