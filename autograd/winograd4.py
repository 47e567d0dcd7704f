"""Winograd F(4x4, 3x3): 6x6 tiles, 4x fewer multiplications, the transforms as matrix products.

Read winograd.py first: this is the same algorithm with larger tiles. A 4x4 output tile needs the
6x6 patch d of the padded input starting at row 4*th, column 4*tw, and for one channel pair

    Y = A^T [ (G w G^T) * (B^T d B) ] A          (Y 4x4, the products 6x6)

with Lavin & Gray's matrices below, built from the points 0, 1, -1, 2, -2 and infinity
(docs/winograd.md). 36 multiplications per tile and (o, c) for 16 outputs of 9 taps: 4x fewer
than the 144 of the direct sum, against 2.25x for F(2x2, 3x3).

winograd.py's code runs it with these matrices (``F4``, a winograd.Tiling): per band of tile
rows, 36 strided copies of the padded input give the taps d (36, C, T), V = BB @ d with the
Kronecker product BB = B^T (x) B^T (36, 36), Z = U @ V (36, O, T), Y = AA @ Z with
AA = A^T (x) A^T (16, 36), then y[:, a::4, b::4] = Y[a, b].

B and A hold 4, 5 and 8, not just +-1 as in F(2x2, 3x3): the float32 rounding of V and Z is
amplified on the way back, and the error is about 20x larger (docs/winograd.md, "Accuracy").
conv_fast.py uses this file only for VGG's 512-channel layers, where the measured agreement with
PyTorch stayed as it was (bench/README.md).

The functions below are winograd.py's with ``tiling=F4``; the input gradient runs on the same U.
"""

import numpy as np

from .winograd import (Tiling, transform_kernel as transform_kernel_of, winograd_conv,
                       winograd_conv_buffers, winograd_grad_input, winograd_grad_input_buffers)

BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])   # (6, 6) input
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])       # (6, 3) kernel
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]])                                              # (4, 6) output
F4 = Tiling(BT, G, AT)          # F4.BB (36, 36), F4.AA (16, 36): the 2-D transforms


def transform_kernel(W, dtype):
    """U = G w G^T for every (o, c): W (O, C, 3, 3) -> U (36, O, C), position a*6 + b first."""
    return transform_kernel_of(W, dtype, F4)


def winograd4_conv(x, U, pad, b=None, *, chunk=None, out=None):
    """y = conv2d(x, W, b, pad=pad) from U = transform_kernel(W) (36, O, C): winograd_conv."""
    return winograd_conv(x, U, pad, b, tiling=F4, chunk=chunk, out=out)


def winograd4_grad_input(gy, U, pad, *, chunk=None):
    """gx = dL/dx of y = winograd4_conv(x, U, pad): winograd_grad_input on the same U."""
    return winograd_grad_input(gy, U, pad, tiling=F4, chunk=chunk)


def winograd4_conv_buffers(x_shape, O, pad, *, chunk):
    """{name: elements} of winograd4_conv's arrays (winograd_conv_buffers)."""
    return winograd_conv_buffers(x_shape, O, pad, chunk=chunk, tiling=F4)


def winograd4_grad_input_buffers(gy_shape, C, pad, *, chunk):
    """{name: elements} of winograd4_grad_input's arrays (winograd_grad_input_buffers)."""
    return winograd_grad_input_buffers(gy_shape, C, pad, chunk=chunk, tiling=F4)
