"""Seconds per style-transfer iteration at several sizes, with peak memory, against PyTorch.

    python bench/bench_iteration.py                              # 128 256 512 1024 px, CPU
    python bench/bench_iteration.py --compare torch              # PyTorch too, alternating
    python bench/bench_iteration.py --device gpu --compare torch # CuPy against PyTorch CUDA

One iteration is the loss and its gradient with respect to the image (see common.py): VGG-19 with
random weights down to relu5_1, Gram style terms on relu1_1..relu5_1, content on relu4_2, total
variation. One L-BFGS step (the update included) is timed too, unless ``--no-lbfgs``.
Every time is a median of ``--repeats`` runs after one untimed warm-up, with the spread (min-max),
and is also shown as GFLOP/s (minivgg.plan's FLOP count) and as a fraction of this machine's
float32 matmul rate, measured in the same run. The PyTorch reference runs the same network (the
same weights copied over), the same losses and the same images, in the same process, alternating
with minivgg run by run, each run after a short pause (``time_alternating``: the other engine's
idle threads would otherwise slow it); its loss and gradient are checked against ours before
timing.

Peak memory on the CPU: each (engine, size) runs once more in a fresh subprocess, which reports
the growth of its resident memory (VmHWM, reset just before the iteration, minus VmRSS) during
one iteration; minivgg.plan's estimate of the same is printed beside it. That process leaves
glibc's default for freed memory whatever --release-memory says: with freed memory kept, the
iteration would reuse what building the targets freed, and its growth would hide it. On the
GPU: the growth of CuPy's memory pool, and PyTorch's max_memory_allocated.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import miniautograd as ag  # noqa: E402
from minivgg import optim  # noqa: E402


# -- the same iteration in PyTorch -----------------------------------------------------------------
def import_torch(device, *, tf32=False):
    """torch, set up like minivgg: same threads; strict float32 on the GPU unless ``tf32``."""
    try:
        import torch
    except ImportError:
        common.fail("--compare torch needs PyTorch; install it (pip install torch, or the "
                    "project's optional extra: pip install -e \".[bench]\")")
    torch.set_num_threads(common.cpu_threads())
    if device == "gpu":
        if not torch.cuda.is_available():
            common.fail("this PyTorch build sees no CUDA device; install a CUDA build of PyTorch")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True            # its fastest convolution algorithms
    return torch


def torch_layer(F, spec, h, W, b, pooling):
    """One VGG layer (minivgg.vgg's LayerSpec) in PyTorch, ``F`` = torch.nn.functional.

    Written as a PyTorch user would: convolutions with ``padding=`` where the pads are symmetric
    (all of VGG's), F.pad first otherwise; the pools pad (F.pad) only the rows and columns their
    windows read (VGG's pad [0 1 0 1] is read at odd sizes only). Average pooling counts its zero
    padding, as minivgg's.
    """
    def padded(value):
        top, bottom, left, right = spec.pad
        if spec.kind == "pool":                   # the bottom (right) pad the last window reads
            bottom, right = (max(0, (n + a + z - k) // s * s + k - (n + a))
                             for n, a, z, k, s in zip(h.shape[2:], (top, left), (bottom, right),
                                                      spec.kernel, spec.stride))
        pads = (left, right, top, bottom)
        return F.pad(h, pads, value=value) if any(pads) else h
    if spec.kind == "conv":
        top, bottom, left, right = spec.pad
        if (top, left) == (bottom, right):
            return F.conv2d(h, W, b, stride=spec.stride, padding=(top, left))
        return F.conv2d(padded(0.0), W, b, stride=spec.stride)
    if spec.kind == "relu":
        return F.relu(h)
    if pooling == "avg":
        return F.avg_pool2d(padded(0.0), spec.kernel, spec.stride)
    return F.max_pool2d(padded(-np.inf), spec.kernel, spec.stride)


class TorchProblem:
    """minivgg's Problem in PyTorch: the net's weights, targets from the same images, same x;
    every tensor in ``dtype`` (torch.float64 for a reference), default as given (float32)."""

    def __init__(self, torch, problem, device, dtype=None):
        self.torch, self.F = torch, torch.nn.functional
        self.dev, self.dtype = "cuda" if device == "gpu" else "cpu", dtype
        net = problem.net
        self.pooling = net.pooling
        self.layers = [(spec, self.tensor(net.params[spec.name][0].data),
                        self.tensor(net.params[spec.name][1].data))
                       if spec.kind == "conv" else (spec, None, None)
                       for spec in net.layers[:net.layer_names.index(common.DEEPEST) + 1]]
        out = self.features(self.tensor(problem.content), common.CONTENT_LAYERS)
        self.content = {name: f.detach() for name, f in out.items()}
        out = self.features(self.tensor(problem.style), common.STYLE_LAYERS)
        self.style = {name: self.normalized_gram(f).detach() for name, f in out.items()}
        self.x = self.tensor(problem.x)

    def tensor(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(ag.to_cpu(a))).to(self.dev, self.dtype)

    def features(self, h, names):
        """{name: response} of the layers ``names``: conv, relu and pool as minivgg's VGG19."""
        found = {}
        for spec, W, b in self.layers:
            h = found[spec.name] = torch_layer(self.F, spec, h, W, b, self.pooling)
        return {name: found[name] for name in names}

    def normalized_gram(self, F):
        N, C, H, W = F.shape
        Fm = F.reshape(N, C, H * W)                         # (N, C, H, W) -> (N, C, H*W)
        return Fm @ Fm.transpose(1, 2) / (H * W)            # (N, C, C)

    def loss(self, x):
        """minivgg.losses.Objective's total, written out in PyTorch."""
        out = self.features(x, [*common.CONTENT_LAYERS, *common.STYLE_LAYERS])
        content = sum(0.5 * ((out[n] - P) ** 2).sum() / P.numel() for n, P in self.content.items())
        style = 0.0
        for name, A in self.style.items():
            N, C = out[name].shape[:2]
            w = 1.0 / len(self.style)                        # equal weights, summing to 1
            style = style + w * ((self.normalized_gram(out[name]) - A) ** 2).sum() / (4 * C * C * N)
        tv = (((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum() + ((x[..., 1:] - x[..., :-1]) ** 2).sum())
        tv = tv * (max(x.shape[2:]) / 512) ** 2             # slopes at the reference size
        weights = common.LOSS_WEIGHTS
        return (weights["content_weight"] / len(self.content) * content
                + weights["style_weight"] * style
                + weights["tv_weight"] * tv / (x.shape[0] * x.shape[2] * x.shape[3]))

    def step(self):
        """One iteration: (loss as a float, dL/dx)."""
        x = self.x.detach().requires_grad_(True)
        total = self.loss(x)
        total.backward()
        return total.item(), x.grad


def host_float64(a):
    """A minivgg array (NumPy or CuPy) or a torch tensor as a float64 NumPy array."""
    if hasattr(a, "detach"):                            # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(ag.to_cpu(a), dtype=np.float64)


def gradient_difference(grad, reference):
    """|g - g_ref| / |g_ref| of two gradients, minivgg arrays or torch tensors."""
    g, g_ref = host_float64(grad), host_float64(reference)
    return float(np.linalg.norm(g - g_ref) / np.linalg.norm(g_ref))


def agreement(ours, theirs):
    """(relative difference of the losses, of the gradients) between minivgg and PyTorch."""
    (loss, grad), (t_loss, t_grad) = ours, theirs
    return abs(loss - t_loss) / abs(t_loss), gradient_difference(grad, t_grad)


def sync_for(torch, device):
    return torch.cuda.synchronize if device == "gpu" else (lambda: None)


# -- timing ----------------------------------------------------------------------------------------
SETTLE_SECONDS = 0.3   # the pause before each timed step when engines alternate (see below)


def pause_for(engines, settle=SETTLE_SECONDS):
    """A function that sleeps ``settle`` seconds where more than one engine alternates, and does
    nothing for one engine alone."""
    return (lambda: time.sleep(settle)) if len(engines) > 1 else (lambda: None)


def time_alternating(engines, repeats, *, settle=SETTLE_SECONDS):
    """{name: [seconds] * repeats} for engines {name: (step, sync)}: a warm-up each, alternating.

    With more than one engine, each step waits ``settle`` seconds first: after its last matrix
    product, OpenBLAS keeps its worker threads spinning for a while (about 0.1 s here), and on a
    2-core machine they took the cores from whichever engine ran next. Measured at 256 px on the
    2-core AMD EPYC (bench/README.md): PyTorch right after minivgg took 0.40-0.42 s, after a
    pause of 0.1 s or more 0.33-0.35 s, its time when run alone; minivgg's did not change.
    """
    pause = pause_for(engines, settle)
    for step, _ in engines.values():
        pause()
        step()
    times = {name: [] for name in engines}
    for _ in range(repeats):
        for name, (step, sync) in engines.items():
            pause()
            times[name].append(common.seconds(step, sync))
    return times


def lbfgs_engine(problem):
    """(one L-BFGS step, a list counting the loss evaluations, the first one included)."""
    calls = []

    def evaluate(x):
        calls.append(1)
        total, grad, _ = problem.objective.value_and_grad(x)
        return total, grad
    opt = optim.LBFGS(problem.x, evaluate)
    return opt.step, calls


def bench_size(net, size, args, xp, torch):
    """Times (and the PyTorch agreement) at one size: a dict for the tables."""
    problem = common.make_problem(net, (size, size), xp=xp, seed=args.seed)
    row = {"size": size, "flop": common.iteration_plan(net, (size, size)).flop}
    engines = {"minivgg": (problem.step, common.device_sync(xp))}
    if torch is not None:
        reference = TorchProblem(torch, problem, args.device)
        row["agreement"] = agreement(problem.step(), reference.step())
        engines["torch"] = (reference.step, sync_for(torch, args.device))
    row.update(time_alternating(engines, args.repeats))
    lbfgs = None if args.no_lbfgs else lbfgs_engine(problem)
    if lbfgs is not None:
        step, calls = lbfgs
        row["lbfgs"] = time_alternating({"lbfgs": (step, common.device_sync(xp))},
                                        args.repeats)["lbfgs"]
        row["evaluations"] = len(calls) / (args.repeats + 1)
    if args.device == "gpu" and not args.no_memory:
        row["memory"] = gpu_memory(xp, problem, torch, engines)
    return row


# -- memory ----------------------------------------------------------------------------------------
def gpu_memory(xp, problem, torch, engines):
    """{engine: bytes} the GPU memory one iteration adds at its peak."""
    pool = xp.get_default_memory_pool()
    pool.free_all_blocks()                         # the pool keeps freed blocks: start from none
    before = pool.total_bytes()
    problem.step()
    xp.cuda.Stream.null.synchronize()
    memory = {"minivgg": pool.total_bytes() - before}
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        engines["torch"][0]()
        torch.cuda.synchronize()
        memory["torch"] = torch.cuda.max_memory_allocated() - before
    return memory


def memory_worker(args):
    """In a fresh process: one iteration of one engine; print its resident-memory growth (JSON)."""
    size = args.sizes[0]
    net = common.build_network(seed=args.seed)
    problem = common.make_problem(net, (size, size), seed=args.seed)
    step = problem.step
    if args.memory_worker == "torch":
        step = TorchProblem(import_torch("cpu"), problem, "cpu").step
    reset = common.reset_peak_rss()
    before = common.proc_status_bytes("VmRSS") or 0
    step()
    print(json.dumps({"growth": common.peak_rss_bytes() - before, "reset": reset}))


def cpu_memory(engine, size, args):
    """Run memory_worker in a subprocess; its growth in bytes, or None if it failed."""
    command = [sys.executable, __file__, "--memory-worker", engine, "--sizes", str(size),
               "--seed", str(args.seed)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  (the {engine} memory run at {size} px failed: "
              f"{(result.stderr.strip().splitlines() or ['no message'])[-1]})")
        return None
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["reset"]:
        print("  (this kernel cannot reset the peak-memory mark: the peak may predate the "
              "iteration)")
    return report["growth"]


# -- report ----------------------------------------------------------------------------------------
def rate_columns(times, flop, rate):
    """'0.123 s (0.120-0.130)   123.4  0.71': time, GFLOP/s, fraction of the matmul rate."""
    median = common.summary(times)[0]
    achieved = flop / median / 1e9
    return f"{common.format_time(times):<26}{achieved:>8.1f}{achieved / rate:>7.2f}"


def paired_ratios(ours, theirs):
    """(median, min, max) of the run-by-run ratios ours[i] / theirs[i]. Run i of each engine ran
    back to back, so a drift of the machine between rounds (10-20% here within minutes) divides
    out of each ratio, where the ratio of the two medians keeps it."""
    return common.summary([a / b for a, b in zip(ours, theirs)])


def print_row(row, rate):
    line = (f"{row['size']:>5}  {row['flop'] / 1e9:>7.1f}  "
            + rate_columns(row["minivgg"], row["flop"], rate))
    if "torch" in row:
        ratio = common.summary(row["minivgg"])[0] / common.summary(row["torch"])[0]
        paired, low, high = paired_ratios(row["minivgg"], row["torch"])
        line += (f"   {rate_columns(row['torch'], row['flop'], rate)}{ratio:>8.2f}"
                 f"{paired:>8.2f} ({low:.2f}-{high:.2f})")
    if "lbfgs" in row:
        line += f"   {common.format_time(row['lbfgs'])} ({row['evaluations']:.1f} evaluations)"
    print(line, flush=True)
    if "agreement" in row:
        loss, grad = row["agreement"]
        print(f"{'':>7}PyTorch agrees: loss to {loss:.1e}, gradient to {grad:.1e} (relative)")


def header(args, torch):
    columns = (f"{'size':>5}  {'GFLOP':>7}  {'minivgg s/iter (min-max)':<26}{'GFLOP/s':>8}"
               f"{'of mm':>7}")
    if torch is not None:
        columns += (f"   {'torch s/iter (min-max)':<26}{'GFLOP/s':>8}{'of mm':>7}{'ratio':>8}"
                    f"{'paired (min-max)':>20}")
    if not args.no_lbfgs:
        columns += "   minivgg s per L-BFGS step"
    return columns


def print_exponents(rows):
    """The fitted k of time ~ pixels^k over the sizes from 256 px (all sizes if fewer than 2)."""
    chosen = [r for r in rows if r["size"] >= 256]
    chosen = chosen if len(chosen) >= 2 else rows
    if len(chosen) < 2:
        return
    pixels = [r["size"] ** 2 for r in chosen]
    fits = []
    for name in ("minivgg", "torch"):
        if name in chosen[0]:
            medians = [common.summary(r[name])[0] for r in chosen]
            fits.append(f"{name} {common.fitted_exponent(pixels, medians):.2f}")
    print(f"time ~ pixels^k from {chosen[0]['size']} to {chosen[-1]['size']} px: k = "
          + ", ".join(fits))


def print_memory(rows, args, net):
    """Peak memory growth of one iteration per size: measured, minivgg.plan's model, PyTorch."""
    from minivgg import explain, plan
    print("\npeak memory added by one iteration "
          + ("(CuPy pool / torch.cuda.max_memory_allocated):" if args.device == "gpu" else
             "(resident memory, a fresh process per engine and size):"))
    print(f"{'size':>5}  {'minivgg':>12}{'plan model':>12}"
          + (f"{'torch':>12}" if args.compare else ""))
    for row in rows:
        model = plan.plan_iteration(net, (row["size"],) * 2, device=args.device,
                                    deepest=common.DEEPEST, style_layers=common.STYLE_LAYERS,
                                    content_layers=common.CONTENT_LAYERS)
        memory = row.get("memory") or {
            engine: cpu_memory(engine, row["size"], args)
            for engine in ["minivgg"] + (["torch"] if args.compare else [])}
        cells = [memory.get("minivgg"), model.kept_bytes + model.transient_bytes]
        cells += [memory.get("torch")] if args.compare else []
        text = [explain.format_bytes(c) if c is not None else "failed" for c in cells]
        print(f"{row['size']:>5}  " + "".join(f"{t:>12}" for t in text), flush=True)


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024],
                   help="square image sizes in pixels (default: 128 256 512 1024)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per size (default: 5)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--compare", choices=["torch"], help="also run PyTorch, alternating")
    p.add_argument("--tf32", action="store_true",
                   help="GPU: allow TF32 in both engines (run with CUPY_TF32=1 for CuPy)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--no-lbfgs", action="store_true", help="skip the L-BFGS step timing")
    p.add_argument("--seed", type=int, default=0, help="weights and images (default: 0)")
    common.add_release_memory(p)
    p.add_argument("--memory-worker", choices=["minivgg", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 1:
        p.error("--repeats and --sizes must be at least 1")
    if args.tf32 and (args.device != "gpu" or os.environ.get("CUPY_TF32") != "1"):
        p.error("--tf32 needs --device gpu and CUPY_TF32=1 in the environment (CuPy reads it "
                "when it starts), so that both engines use TF32")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory_worker:
        return memory_worker(args)
    xp = common.device_module(args.device)
    memory_line = common.freed_memory(args.release_memory)
    torch = import_torch(args.device, tf32=args.tf32) if args.compare else None
    rate = common.matmul_rate(xp)
    print("\n".join(common.machine_lines(args.device, xp) + [memory_line]))
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    precision = f"; precision: {'TF32' if args.tf32 else 'strict float32'}" if xp is not np else ""
    print(f"float32 matmul rate: {rate:.1f} GFLOP/s; 'of mm' = GFLOP/s / that rate; "
          f"ratio = minivgg / torch{precision}\n")
    net = common.build_network(device=args.device, seed=args.seed)
    print(header(args, torch))
    rows = []
    for size in args.sizes:
        rows.append(bench_size(net, size, args, xp, torch))
        print_row(rows[-1], rate)
    print_exponents(rows)
    if not args.no_memory:
        print_memory(rows, args, net)


if __name__ == "__main__":
    main()
