"""Per VGG-19 layer: forward and input-gradient time, GFLOP/s, and the share outside the matmuls.

    python bench/bench_layers.py                    # 512 x 512, CPU, down to relu5_1
    python bench/bench_layers.py --size 256 --device gpu
    python bench/bench_layers.py --compare torch    # each layer in PyTorch too, and the ratio

Each layer runs alone on a random input of the shape it sees in the network (batch 1), through
the engine's public path (``net.apply``: ag.conv2d, ag.relu, the pool) with x requiring a
gradient and the weights frozen, as in style transfer. "fwd" is the forward call, "bwd" the op's
backward from a random gy to x, as backpropagation calls it (without the copy into a leaf's
``.grad`` that ``y.backward`` would add). For a convolution the matrix products it contains are then timed
alone, on the same shapes and in the same chunks as autograd/conv.py makes them
(Wm @ col for the forward, Wm^T @ gy for the input gradient): "outside mm" is the share of the
layer's time spent elsewhere (im2col, col2im, padding, bias, allocation); the last column says
which algorithm conv2d took (Winograd layers do fewer multiplications than the direct FLOP
counted, so their "of mm" can pass 1 and "outside" go negative). Times are medians of
``--repeats`` runs after a warm-up, with the spread; GFLOP/s also as a fraction ("of mm") of the
machine's float32 matmul rate measured in the same run. ReLU and pooling do one multiply-add or
less per byte they touch, so their speed is that of the memory: "GB/s" is the least traffic each
must make (``traffic_bytes``: every array it reads or writes, once) divided by its time.

``--compare torch`` times each layer in PyTorch as well, on the same input, weights and gy
(bench_iteration.torch_layer; the backward is torch.autograd.grad to x alone), alternating with
minivgg run by run, each run after a pause that lets the other engine's threads go idle, and
ends each row with PyTorch's forward and backward times and the ratio of the sums, minivgg /
PyTorch: where the iteration's time goes against PyTorch's.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_iteration  # noqa: E402
import common  # noqa: E402
import miniautograd as ag  # noqa: E402
from miniautograd import conv  # noqa: E402
from miniautograd.backend import default_chunk  # noqa: E402


def median_seconds(fn, sync, repeats):
    """The list of ``repeats`` timings of fn() after one warm-up."""
    fn()
    return [common.seconds(fn, sync) for _ in range(repeats)]


def layer_steps(net, spec, x_shape, xp):
    """(forward, backward, output shape) of one layer on a random input: the forward call, and
    the op's backward from a random gy to x."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal(x_shape, dtype=np.float32)
    x = ag.Tensor(data if xp is np else xp.asarray(data), requires_grad=True)
    y = net.apply(spec, x)
    gy_data = rng.standard_normal(y.shape, dtype=np.float32)
    gy = gy_data if xp is np else xp.asarray(gy_data)
    f = y.creator
    return (lambda: net.apply(spec, x)), (lambda: f.backward(gy)), y.shape


def torch_layer_steps(torch, device, net, spec, x_shape):
    """(forward, backward) of one layer in PyTorch, on layer_steps' input and gy."""
    F, dev = torch.nn.functional, "cuda" if device == "gpu" else "cpu"
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(x_shape, dtype=np.float32)).to(dev)
    x.requires_grad_(True)
    W, b = ([torch.from_numpy(ag.to_cpu(p.data)).to(dev) for p in net.params[spec.name]]
            if spec.kind == "conv" else (None, None))

    def forward():
        return bench_iteration.torch_layer(F, spec, x, W, b, net.pooling)
    y = forward()
    gy = torch.from_numpy(rng.standard_normal(tuple(y.shape), dtype=np.float32)).to(dev)
    return forward, lambda: torch.autograd.grad(y, x, gy, retain_graph=True)


def step_times(engines, repeats):
    """{name: (forward times, backward times)} for engines {name: (forward, backward, sync)}:
    after a warm-up each, alternating run by run, each run after bench_iteration's pause when
    there are two (the other engine's idle threads would slow it; the machine's drift hits
    both). After the pause one untimed forward wakes the engine's own threads: a layer takes
    milliseconds, and waking a sleeping thread pool cost PyTorch several of them (a 1M-element
    ReLU read 6 ms instead of 0.5)."""
    pause = bench_iteration.pause_for(engines)
    for forward, backward, _ in engines.values():
        forward()
        backward()
    times = {name: ([], []) for name in engines}
    for _ in range(repeats):
        for name, (forward, backward, sync) in engines.items():
            pause()
            if len(engines) > 1:
                forward()
            times[name][0].append(common.seconds(forward, sync))
            times[name][1].append(common.seconds(backward, sync))
    return times


def traffic_bytes(kind, pooling, x_shape, y_shape, itemsize=4):
    """(forward, backward) bytes a ReLU or pool must read and write at the least, each array once.

    ReLU: x in, y and its one-byte mask out; back: gy and the mask in, gx out. Average pool: x in,
    y out; back: gy in, gx out. Max pool adds its one-byte argmax (out, then in).
    """
    inputs, outputs = int(np.prod(x_shape)), int(np.prod(y_shape))
    if kind == "relu":
        return (2 * itemsize + 1) * inputs, (2 * itemsize + 1) * inputs
    extra = outputs if pooling == "max" else 0
    traffic = itemsize * (inputs + outputs) + extra
    return traffic, traffic


def matmul_times(x_shape, W_shape, xp, repeats):
    """(forward, backward) times of a 'same' conv's matrix products alone, chunked as conv.py.

    Forward: Wm (O, CKK) @ col (CKK, r*OW) per chunk of r output rows; backward:
    Wm^T (CKK, O) @ gy (O, r*OW). Batch 1, stride 1, so OH = H and OW = W.
    """
    (_, C, H, W), (O, _, KH, KW) = x_shape, W_shape
    CKK = C * KH * KW
    bands = [rows.stop - rows.start for _, rows in conv.chunks(1, H, CKK * W, default_chunk(xp))]
    rng = np.random.default_rng(0)
    Wm = xp.asarray(rng.standard_normal((O, CKK), dtype=np.float32))
    col = xp.asarray(rng.standard_normal((CKK, bands[0] * W), dtype=np.float32))
    gy = xp.asarray(rng.standard_normal((O, bands[0] * W), dtype=np.float32))
    out_y, out_gcol = xp.empty((O, bands[0] * W), np.float32), xp.empty_like(col)
    WmT = Wm.T                                                  # (O, CKK) -> (CKK, O)

    def forward():
        for r in bands:
            xp.matmul(Wm, col[:, :r * W], out=out_y[:, :r * W])   # (O, CKK) @ (CKK, r*W)

    def backward():
        for r in bands:
            xp.matmul(WmT, gy[:, :r * W], out=out_gcol[:, :r * W])  # (CKK, O) @ (O, r*W)
    sync = common.device_sync(xp)
    return median_seconds(forward, sync, repeats), median_seconds(backward, sync, repeats)


def measure(net, size, xp, repeats, deepest, torch=None, device="cpu"):
    """One dict per layer down to ``deepest``: name, shape, macs, times (and matmul times, and
    PyTorch's times, "torch_fwd" and "torch_bwd", when ``torch`` is given)."""
    from minivgg import plan
    costs = {c.name: c for c in plan.layer_costs(net, (size, size), deepest=deepest)}
    rows, x_shape = [], (1, 3, size, size)
    for spec in net.layers[:net.layer_names.index(deepest) + 1]:
        forward, backward, y_shape = layer_steps(net, spec, x_shape, xp)
        engines = {"": (forward, backward, common.device_sync(xp))}
        if torch is not None:
            engines["torch_"] = (*torch_layer_steps(torch, device, net, spec, x_shape),
                                 bench_iteration.sync_for(torch, device))
        row = {"name": spec.name, "shape": y_shape, "macs": costs[spec.name].macs,
               "algorithm": costs[spec.name].algorithm}
        for name, (forward_times, backward_times) in step_times(engines, repeats).items():
            row[name + "fwd"], row[name + "bwd"] = forward_times, backward_times
        if spec.kind != "conv":
            row["bytes_fwd"], row["bytes_bwd"] = traffic_bytes(spec.kind, net.pooling, x_shape,
                                                               y_shape)
        else:
            W_shape = net.params[spec.name][0].shape
            row["mm_fwd"], row["mm_bwd"] = matmul_times(x_shape, W_shape, xp, repeats)
        rows.append(row)
        print(format_row(row, RATE[0]), flush=True)
        x_shape = y_shape
    return rows


RATE = [1.0]   # the matmul rate, set by main before the rows are printed


def columns(row, direction, rate):
    """'12.3 ms (12.0-13.1)  123.4  0.71   8%      ' for a conv, '... 12.3' (GB/s) for the rest."""
    times = row[direction]
    median = common.summary(times)[0]
    cell = f"{median * 1e3:.1f} ms ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})"
    if not row["macs"]:
        return f"{cell:<30}{'':>23}{row['bytes_' + direction] / median / 1e9:>7.1f}"
    gflops = 2 * row["macs"] / median / 1e9
    outside = 1 - common.summary(row["mm_" + direction])[0] / median
    return f"{cell:<30}{gflops:>8.1f}{gflops / rate:>7.2f}{outside:>8.0%}{'':>7}"


def torch_columns(row):
    """' 9.8 / 10.1 ms  1.02': PyTorch's forward and backward medians, then minivgg / PyTorch
    of the sums; '' without PyTorch's times."""
    if "torch_fwd" not in row:
        return ""
    ours, theirs = ([common.summary(row[key + d])[0] for d in ("fwd", "bwd")]
                    for key in ("", "torch_"))
    cell = f"{theirs[0] * 1e3:.1f} / {theirs[1] * 1e3:.1f} ms"
    return f"{cell:>20}{sum(ours) / sum(theirs):>7.2f}"


def format_row(row, rate):
    _, c, h, w = row["shape"]
    return (f"{row['name']:<9}{f'{c}x{h}x{w}':>13}  " + columns(row, "fwd", rate) + "  "
            + columns(row, "bwd", rate) + f"  {row['algorithm']:<9}"
            + torch_columns(row)).rstrip()


def print_totals(rows, rate):
    """Whole-network sums of the medians, the share outside the matrix products, and the time
    and speed of the memory-bound ops (ReLU and pooling) together."""
    for direction in ("fwd", "bwd"):
        total = sum(common.summary(r[direction])[0] for r in rows)
        mm = sum(common.summary(r["mm_" + direction])[0] for r in rows if "mm_" + direction in r)
        macs = sum(r["macs"] for r in rows)
        gflops = 2 * macs / total / 1e9
        print(f"total {direction}: {total:.3f} s, {gflops:.1f} GFLOP/s ({gflops / rate:.2f} of "
              f"mm), {1 - mm / total:.0%} outside the matrix products of the convolutions")
    if "torch_fwd" in rows[0]:
        ours, theirs = ({d: sum(common.summary(r[key + d])[0] for r in rows)
                         for d in ("fwd", "bwd")} for key in ("", "torch_"))
        print(f"PyTorch: {theirs['fwd']:.3f} s fwd + {theirs['bwd']:.3f} s bwd; minivgg / "
              f"PyTorch: {ours['fwd'] / theirs['fwd']:.2f} fwd, {ours['bwd'] / theirs['bwd']:.2f}"
              f" bwd, {sum(ours.values()) / sum(theirs.values()):.2f} together")
    memory_bound = [r for r in rows if not r["macs"]]
    seconds = {d: sum(common.summary(r[d])[0] for r in memory_bound) for d in ("fwd", "bwd")}
    traffic = sum(r["bytes_fwd"] + r["bytes_bwd"] for r in memory_bound)
    print(f"ReLU and pooling: {seconds['fwd'] * 1e3:.1f} ms fwd + {seconds['bwd'] * 1e3:.1f} ms "
          f"bwd, {traffic / (seconds['fwd'] + seconds['bwd']) / 1e9:.1f} GB/s")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512, help="square input size (default: 512)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per layer (default: 5)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--deepest", default=common.DEEPEST, help="last layer (default: relu5_1)")
    p.add_argument("--pooling", choices=["avg", "max"], default="avg")
    p.add_argument("--seed", type=int, default=0, help="random weights (default: 0)")
    p.add_argument("--compare", choices=["torch"], help="also time each layer in PyTorch")
    common.add_release_memory(p)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.size < 1:
        p.error("--repeats and --size must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    xp = common.device_module(args.device)
    net = common.build_network(device=args.device, seed=args.seed, pooling=args.pooling)
    common.require_layer(net, args.deepest)
    memory_line = common.freed_memory(args.release_memory)
    torch = bench_iteration.import_torch(args.device) if args.compare else None
    RATE[0] = common.matmul_rate(xp)
    print("\n".join(common.machine_lines(args.device, xp) + [memory_line]))
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"float32 matmul rate: {RATE[0]:.1f} GFLOP/s; input {args.size}x{args.size}, batch 1, "
          f"{args.pooling} pooling\n")
    head = f"{'GFLOP/s':>8}{'of mm':>7}{'outside':>8}{'GB/s':>7}"
    print(f"{'layer':<9}{'output':>13}  {'fwd ms (min-max)':<30}{head}  "
          f"{'bwd ms (min-max)':<30}{head}  algorithm"
          + (f"{'torch fwd / bwd':>20}{'ratio':>7}" if torch else ""))
    rows = measure(net, args.size, xp, args.repeats, args.deepest, torch, args.device)
    print_totals(rows, RATE[0])


if __name__ == "__main__":
    main()
