"""The gradient check of every op, run by ``python -m miniautograd.gradcheck``.

Each case is (label, f, inputs[, options]) on random non-square float64 inputs; ``run_cases`` checks
them all with ``gradcheck`` and prints one row per case.
"""
import argparse
import sys

import numpy as np

from .. import arith
from ..activation import relu
from ..conv import conv2d_im2col
from ..conv_fast import conv2d
from ..gram import gram
from ..pooling import avg_pool2d, max_pool2d
from ..reductions import sum_squared_error, total_variation
from ..sqrtm import sqrtm_psd
from . import gradcheck

def engine_cases(rng):
    """(label, f, inputs) for every op of the engine, on random non-square float64 inputs."""

    def n(*shape):                                 # standard normal
        return rng.standard_normal(shape)

    def away(*shape, low=0.5):                     # |x| in [low, low + 1): away from 0 and kinks
        return rng.choice([-1.0, 1.0], shape) * (low + rng.random(shape))

    def spd(N, C):                                 # symmetric, eigenvalues >= 0.2: sqrt is smooth
        B = rng.standard_normal((N, C, C + 2))
        return B @ B.swapaxes(1, 2) / (C + 2) + 0.2 * np.eye(C)   # (N, C, C+2) @ (N, C+2, C)

    return [
        ("add (broadcast)", arith.add, [n(3, 1, 5), n(4, 1)]),
        ("sub (broadcast)", arith.sub, [n(4, 1), n(3, 4, 5)]),
        ("mul (broadcast)", arith.mul, [n(2, 3, 4), n(3, 1)]),
        ("div (broadcast)", arith.div, [n(2, 3, 4), away(4)]),
        ("div (broadcast numerator)", arith.div, [n(3, 1), away(2, 3, 5)]),
        ("neg", arith.neg, [n(3, 5)]),
        ("power p=3", lambda x: arith.power(x, 3), [n(2, 5)]),
        ("power p=-1.5", lambda x: arith.power(x, -1.5), [np.abs(away(3, 4))]),
        ("sum", arith.sum, [n(3, 4, 2)]),
        ("sum axis=1", lambda x: arith.sum(x, axis=1), [n(3, 4, 2)]),
        ("sum axis=(0,2) keepdims", lambda x: arith.sum(x, axis=(0, 2), keepdims=True),
         [n(3, 4, 2)]),
        ("mean axis=-1", lambda x: arith.mean(x, axis=-1), [n(3, 4, 5)]),
        ("mean axis=(0,2) keepdims", lambda x: arith.mean(x, axis=(0, 2), keepdims=True),
         [n(3, 4, 2)]),
        ("mean", arith.mean, [n(3, 5)]),
        ("reshape", lambda x: arith.reshape(x, (5, -1)), [n(2, 3, 5)]),
        ("transpose axes=(1,2,0)", lambda x: arith.transpose(x, (1, 2, 0)), [n(2, 3, 5)]),
        ("transpose axes=(-1,0,1)", lambda x: arith.transpose(x, (-1, 0, 1)), [n(2, 3, 5)]),
        ("transpose", arith.transpose, [n(2, 3, 5)]),
        ("matmul", arith.matmul, [n(3, 4), n(4, 5)]),
        ("matmul batched (broadcast)", arith.matmul, [n(2, 1, 3, 4), n(3, 4, 5)]),
        ("relu (inputs away from 0)", relu, [away(2, 3, 4, 5, low=0.05)]),
        ("gram", gram, [n(2, 3, 4, 5)]),
        ("sqrtm_psd (symmetric positive definite)", sqrtm_psd, [spd(2, 5)]),
        ("sqrtm_psd (a non-symmetric A, read as (A + A^T)/2)", sqrtm_psd,
         [spd(1, 4) + 0.05 * n(1, 4, 4)]),
        ("sum_squared_error", sum_squared_error, [n(2, 3, 4), n(2, 3, 4)]),
        ("total_variation", total_variation, [n(2, 3, 5, 4)]),
    ] + conv_pool_cases(rng)


def conv_pool_cases(rng):
    """conv2d, avg_pool2d, max_pool2d: odd sizes, non-square kernels, stride 2, every pad form."""
    x, W, b = (rng.standard_normal(s) for s in ((2, 3, 7, 5), (4, 3, 3, 2), (4,)))
    distinct = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.1   # gaps of 0.1 >> eps
    cases = [("conv2d", conv2d, [x, W]),
             ("conv2d stride=(2, 1) bias",
              lambda x, W, b: conv2d(x, W, b, stride=(2, 1)), [x, W, b])]
    for pad in (1, (1, 2), (0, 1, 2, 1)):
        cases.append((f"conv2d stride=2 pad={pad}",
                      lambda x, W, pad=pad: conv2d(x, W, stride=2, pad=pad), [x, W]))
        cases.append((f"conv2d stride=2 pad={pad} bias",
                      lambda x, W, b, pad=pad: conv2d(x, W, b, stride=2, pad=pad), [x, W, b]))
    big = [rng.standard_normal(s) for s in ((2, 8, 17, 12), (16, 8, 3, 3), (16,))]
    W33, Wio = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 3, 3, 2))
    cases += [("conv2d winograd pad=1 bias",
               lambda x, W, b: conv2d(x, W, b, pad=1, algorithm="winograd"), [x, W33, b]),
              ("conv2d winograd pad=(0, 2, 1, 0) (odd output)",
               lambda x, W: conv2d(x, W, pad=(0, 2, 1, 0), algorithm="winograd"), [x, W33]),
              ("conv2d winograd4 pad=1 bias",
               lambda x, W, b: conv2d(x, W, b, pad=1, algorithm="winograd4"), [x, W33, b]),
              ("conv2d winograd4 pad=(0, 2, 1, 0) (outputs not multiples of 4)",
               lambda x, W: conv2d(x, W, pad=(0, 2, 1, 0), algorithm="winograd4"), [x, W33]),
              ("conv2d shifted pad=1 bias (O > C)",
               lambda x, W, b: conv2d(x, W, b, pad=1, algorithm="shifted"), [x, W33, b]),
              ("conv2d shifted 3x2 kernel pad=(1, 0, 1, 1)",
               lambda x, W: conv2d(x, W, pad=(1, 0, 1, 1), algorithm="shifted"), [x, Wio]),
              ("conv2d im2col pad=(1, 0, 1, 1) O<=C (input gradient as a convolution)",
               lambda x, W: conv2d(x, W, pad=(1, 0, 1, 1), algorithm="im2col"), [x, Wio]),
              ("conv2d_im2col pad=(1, 0, 1, 1) O<=C (the reference: col2im)",
               lambda x, W: conv2d_im2col(x, W, pad=(1, 0, 1, 1)), [x, Wio])]
    return cases + [
        ("conv2d 3x3 pad=1 bias, directional", lambda x, W, b: conv2d(x, W, b, pad=1), big,
         {"directional": True}),
        ("avg_pool2d kernel=2", lambda x: avg_pool2d(x, 2), [x]),
        ("avg_pool2d kernel=(3, 2)", lambda x: avg_pool2d(x, (3, 2)), [x]),
        ("avg_pool2d kernel=3 stride=2 pad=1", lambda x: avg_pool2d(x, 3, stride=2, pad=1), [x]),
        ("max_pool2d kernel=2 (distinct)", lambda x: max_pool2d(x, 2), [distinct]),
        ("max_pool2d kernel=(3, 2) (distinct)", lambda x: max_pool2d(x, (3, 2)), [distinct]),
        ("max_pool2d kernel=3 stride=2 pad=(1, 0, 1, 1) (distinct)",
         lambda x: max_pool2d(x, 3, stride=2, pad=(1, 0, 1, 1)), [distinct]),
    ]


def run_cases(cases, *, out=None):
    """Gradcheck each (label, f, inputs[, options]); print a table to ``out`` (default stdout).

    Returns True when every case passes. An op that raises is a failing row, not a crash.
    """
    header, rows = ("op", "shapes", "max rel err", "result"), []
    for label, f, inputs, *options in cases:
        shapes = " ".join(str(tuple(x.shape)).replace(" ", "") for x in inputs)
        try:
            result = gradcheck(f, *inputs, **(options[0] if options else {}))
            shapes += " -> " + str(result.out_shape).replace(" ", "")
            error, verdict = f"{result.max_error:.1e}", "pass" if result.ok else "FAIL"
        except Exception as exc:
            error, verdict = "-", f"FAIL ({type(exc).__name__}: {exc})"
        rows.append((label, shapes, error, verdict))
    widths = [max(len(row[k]) for row in [header] + rows) for k in (0, 1, 2)]
    for row in [header] + rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:3], widths))
        print(line, row[3], file=out or sys.stdout)
    return all(row[3] == "pass" for row in rows)


def main(argv=None):
    """Check every op; print the table; return 0 when all pass, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m miniautograd.gradcheck",
                                     description="Gradient-check every op of miniautograd.")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = parser.parse_args(argv)
    ok = run_cases(engine_cases(np.random.default_rng(args.seed)))
    print("all ops pass" if ok else "some ops FAIL")
    return 0 if ok else 1

