"""Float32 error per VGG-19 convolution for each algorithm, and of whole style-transfer gradients.

    python bench/bench_accuracy.py                   # 512 x 512, every convolution to conv5_1
    python bench/bench_accuracy.py --problems 6      # and six gradients against PyTorch float64

Per layer: the layer's input is the network's own response to a random image (``common``'s
content image), computed in float64 and rounded to float32 as the layer would receive it. Each
algorithm conv2d offers runs the layer on it in float32; the error is

    RMS(y32 - y64) / RMS(y64)

with y64 the float64 im2col convolution of the same float32 input and weights, so only the
algorithm's own rounding is counted. "*" marks what ``auto`` takes; with PyTorch installed its
float32 convolution (oneDNN) is a column too. This is what conv_fast.choose_algorithm's rule
is checked against (docs/winograd.md).

``--problems N`` (needs PyTorch) computes N style-transfer gradients (``common.make_problem``,
seeds 0 .. N-1) in minivgg and in PyTorch float32, and each error against the same problem in
PyTorch float64. A gradient passes through sixteen ReLUs, whose float32 inputs near zero fall
on either side of it by chance, so one problem says little: read the medians.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_iteration  # noqa: E402
import common  # noqa: E402
import miniautograd as ag  # noqa: E402
from miniautograd import conv_fast  # noqa: E402

ALGORITHMS = ("im2col", "shifted", "winograd", "winograd4")


def relative_rms(y, exact):
    """RMS(y - exact) / RMS(exact), in float64."""
    error = np.asarray(y, dtype=np.float64) - exact
    return float(np.sqrt(np.mean(error ** 2) / np.mean(exact ** 2)))


def layer_errors(net, spec, x, torch=None):
    """{algorithm: relative_rms} of conv layer ``spec`` on x (1, C, H, W) float32, against
    float64 im2col; "torch" too when torch is given; None where an algorithm does not apply."""
    W, b = (p.data for p in net.params[spec.name])
    exact = ag.conv2d(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64),
                      stride=spec.stride, pad=spec.pad, algorithm="im2col").data
    errors = {}
    for algorithm in ALGORITHMS:
        try:
            y = ag.conv2d(x, W, b, stride=spec.stride, pad=spec.pad, algorithm=algorithm)
        except ValueError:                       # a stride or kernel it does not take
            errors[algorithm] = None
            continue
        errors[algorithm] = relative_rms(y.data, exact)
    if torch is not None:
        y = bench_iteration.torch_layer(torch.nn.functional, spec, torch.from_numpy(x),
                                        torch.from_numpy(W), torch.from_numpy(b), net.pooling)
        errors["torch"] = relative_rms(y.numpy(), exact)
    return errors


def per_layer(net, size, deepest, torch=None):
    """Print one row per convolution down to ``deepest``; return the rows' errors."""
    content = common.random_images((size, size))[0]
    h = ag.Tensor(content.astype(np.float64))
    names = [*ALGORITHMS] + (["torch"] if torch is not None else [])
    print(f"{'layer':<9}{'C -> O':>12}{'input':>10}  " + "".join(f"{n:>11}" for n in names))
    rows = []
    for spec in net.layers[:net.layer_names.index(deepest) + 1]:
        if spec.kind == "conv":
            x = h.data.astype(np.float32)
            errors = layer_errors(net, spec, x, torch)
            W_shape = net.params[spec.name][0].shape
            chosen = conv_fast.choose_algorithm("auto", W_shape, spec.stride, spec.pad)
            O, C = W_shape[:2]
            cells = [("-" if errors[n] is None else f"{errors[n]:.1e}")
                     + ("*" if n == chosen else " ") for n in names]
            print(f"{spec.name:<9}{f'{C} -> {O}':>12}{f'{x.shape[2]}x{x.shape[3]}':>10}  "
                  + "".join(f"{c:>11}" for c in cells), flush=True)
            rows.append(dict(name=spec.name, chosen=chosen, **errors))
        h = net.apply(spec, h)
    return rows


def gradients(net, size, problems, torch):
    """Print, per problem, the gradient's relative error against PyTorch float64 for PyTorch
    float32 and minivgg, and minivgg against PyTorch float32; then the medians."""
    print(f"\n{'problem':<9}{'PyTorch f32':>13}{'minivgg':>10}{'minivgg vs PyTorch f32':>24}")
    table = []
    for seed in range(problems):
        problem = common.make_problem(net, (size, size), seed=seed)
        _, exact = bench_iteration.TorchProblem(torch, problem, "cpu", dtype=torch.float64).step()
        _, theirs = bench_iteration.TorchProblem(torch, problem, "cpu").step()
        _, ours = problem.step()
        difference = bench_iteration.gradient_difference
        row = [difference(theirs, exact), difference(ours, exact), difference(ours, theirs)]
        table.append(row)
        print(f"{seed:<9}" + "".join(f"{v:>{w}.1e}" for v, w in zip(row, (13, 10, 24))),
              flush=True)
    medians = np.median(np.array(table), axis=0)
    print(f"{'median':<9}" + "".join(f"{v:>{w}.1e}" for v, w in zip(medians, (13, 10, 24))))
    return table


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512, help="square input size (default: 512)")
    p.add_argument("--deepest", default="conv5_1", help="last layer (default: conv5_1)")
    p.add_argument("--problems", type=int, default=0,
                   help="style-transfer gradients against PyTorch float64 (needs PyTorch)")
    p.add_argument("--seed", type=int, default=0, help="random weights (default: 0)")
    args = p.parse_args(argv)
    if args.size < 1 or args.problems < 0:
        p.error("--size must be at least 1 and --problems at least 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    net = common.build_network(seed=args.seed)
    common.require_layer(net, args.deepest)
    try:
        import torch
    except ImportError:
        torch = None
    if args.problems and torch is None:
        common.fail("--problems needs PyTorch (its float64 run is the reference); install it "
                    "(pip install torch, or the project's optional extra: "
                    "pip install -e \".[bench]\")")
    if torch is not None:
        torch = bench_iteration.import_torch("cpu")             # as many threads as minivgg
    print("\n".join(common.machine_lines("cpu", np)))
    print(f"float32 error, RMS(y - y64) / RMS(y64); input {args.size}x{args.size}; "
          f"* = what auto takes\n")
    per_layer(net, args.size, args.deepest, torch)
    if args.problems:
        gradients(net, args.size, args.problems, torch)


if __name__ == "__main__":
    main()
