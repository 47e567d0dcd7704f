"""conv2d as users call it: per layer, im2col, shifted views or Winograd, and gx without col2im.

Read conv.py (the reference), shifted.py, winograd.py and winograd4.py first. This file adds no
new mathematics, only the choices that make the same convolution faster, and the op that applies
them:

- ``choose_algorithm``: "auto" takes, by the smaller of C and O, Winograd F(4x4, 3x3) from
  WINOGRAD4_MIN_CHANNELS (3x3 stride-1 layers), shifted views (shifted.py; any stride-1 layer)
  from SHIFTED_MIN_CHANNELS, and im2col below (in VGG-19: conv1_1 im2col, conv1_2 and conv2_1
  shifted, conv2_2 to conv5_4 F(4x4, 3x3)). F(2x2, 3x3) runs when asked for by name.
- the input gradient of a stride-1 convolution is itself a convolution: of gy, padded by K-1-p
  on each side, with the flipped kernel Wg[c, o, i, j] = W[o, c, KH-1-i, KW-1-j] (derivation:
  docs/convolution.md). Winograd layers run it through winograd.py, shifted layers through
  shifted.py; im2col layers with O <= C through conv2d_forward (``grad_input_as_conv``), which
  skips col2im's read-modify-write passes.
  col2im, the reference, remains where O > C (conv1_1: 3 -> 64) and for strides above 1: in
  VGG-19, conv1_1 alone.
- ``FastConv2d`` is conv.Conv2d with ``forward`` and ``grad_input`` replaced by these choices;
  what it keeps for backward, and the weight and bias gradients, are conv.Conv2d's.

No cycle: conv.py, shifted.py, winograd.py and winograd4.py import nothing from here; this file
imports them.
"""
from .backend import get_array_module
from .conv import Conv2d, conv2d_forward, conv2d_forward_buffers, conv2d_shapes
from .shifted import shifted_conv
from .shifted import supports as shifted_supports
from .winograd import (TransformedKernels, gradient_pad, supports, winograd_conv,
                       winograd_grad_input)
from .winograd4 import transform_kernel as transform_kernel4
from .winograd4 import winograd4_conv, winograd4_grad_input

ALGORITHMS = ("auto", "im2col", "shifted", "winograd", "winograd4")
SHIFTED_MIN_CHANNELS = 64     # "auto" takes shifted views when C and O are both at least this,
WINOGRAD4_MIN_CHANNELS = 128  # and F(4x4, 3x3) when both are at least this


def choose_algorithm(algorithm, W_shape, stride, pad):
    """"im2col", "shifted", "winograd" or "winograd4" for this convolution; ``algorithm``: one of
    ALGORITHMS.

    The rule for "auto", measured per layer (forward and input gradient) on a 2-core CPU
    (bench/README.md), by the smaller of C and O: from SHIFTED_MIN_CHANNELS (64) shifted views,
    the same products as im2col with a third of its copying: 15-22% less time than im2col at 64
    channels, with a direct sum's rounding. Below (conv1_1, C = 3) its stacked matrix is too
    thin for BLAS: im2col. From WINOGRAD4_MIN_CHANNELS (128) F(4x4, 3x3): 4x fewer
    multiplications, whose transforms cost O(C + O) per tile: 11-18% less time than shifted
    views at 128 channels, 34-37% less than F(2x2, 3x3) at 256 (which beats shifted views only
    from 256 on, and so is never the fastest). Its float32 error with winograd4.py's points is
    at most 4.0e-7 of a VGG layer's output (RMS, at conv2_2), within the 3.9-4.2e-7 of Lavin &
    Gray's points in the 512-channel layers, where the rule took it before
    (bench/bench_accuracy.py, docs/winograd.md).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {', '.join(ALGORITHMS)}; "
                         f"got {algorithm!r}")
    fits, shifts = supports(W_shape, stride, pad), shifted_supports(W_shape, stride, pad)
    if algorithm.startswith("winograd") and not fits:
        raise ValueError(f"conv2d: algorithm={algorithm!r} needs a 3x3 kernel, stride 1 and pads "
                         f"<= 2; got W {tuple(W_shape)}, stride {stride}, pad {pad}")
    if algorithm == "shifted" and not shifts:
        raise ValueError(f"conv2d: algorithm='shifted' needs stride 1 and pads below the "
                         f"kernel's size; got W {tuple(W_shape)}, stride {stride}, pad {pad}")
    if algorithm == "auto":
        channels = min(W_shape[0], W_shape[1])
        if fits and channels >= WINOGRAD4_MIN_CHANNELS:
            return "winograd4"
        return "shifted" if shifts and channels >= SHIFTED_MIN_CHANNELS else "im2col"
    return algorithm


# -- the input gradient as a convolution of gy -----------------------------------------------------
def flipped_kernel(W):
    """Wg (C, O, KH, KW), Wg[c, o, i, j] = W[o, c, KH-1-i, KW-1-j]: the input gradient's kernel."""
    return W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]   # (O, C, KH, KW) -> (C, O, KH, KW)


def as_conv_applies(W_shape, stride, pad):
    """grad_input_as_conv is used for stride 1, pads <= K-1, and O <= C.

    Its im2col copies O*KH*KW rows where col2im adds back C*KH*KW: with O > C (conv1_1's 3 -> 64)
    col2im is cheaper; with O <= C the copy wins over col2im's read-modify-write passes.
    """
    O, C, KH, KW = W_shape
    pt, pb, pl, pr = pad
    return (tuple(stride) == (1, 1) and O <= C and max(pt, pb) <= KH - 1
            and max(pl, pr) <= KW - 1)


def grad_input_as_conv_buffers(gy_shape, W_shape, pad, *, chunk):
    """{name: elements} of the arrays grad_input_as_conv allocates, all alive at its peak.

    Wg (C, O, KH, KW), the flipped kernel's contiguous copy; then those of conv2d_forward on gy:
    gx (its y, the result), band (gy's padded rows of one chunk) and col.
    """
    O, C, KH, KW = W_shape
    forward = conv2d_forward_buffers(gy_shape, (C, O, KH, KW), 1, gradient_pad(pad, W_shape[2:]),
                                     chunk=chunk)
    return dict(Wg=C * O * KH * KW, gx=forward["y"], band=forward["band"], col=forward["col"])


def grad_input_as_conv(gy, W, pad, *, chunk=None):
    """gx for stride 1 and pads <= K-1, as an im2col convolution of gy with flipped_kernel(W).

    Derivation (docs/convolution.md): y[oh] = sum_i W[i] xpad[oh + i] (one spatial axis shown,
    channels as matrices), so gxpad[h] = sum_i W[i]^T gy[h - i]; with i' = KH-1-i that is a
    cross-correlation of gy, padded by KH-1 on each side, with Wg. Removing xpad's pad rows,
    gy needs KH-1-pt rows on top and KH-1-pb at the bottom (winograd.gradient_pad; columns alike).
    """
    Wg = get_array_module(W).ascontiguousarray(flipped_kernel(W))
    return conv2d_forward(gy, Wg, None, 1, gradient_pad(pad, W.shape[2:]), chunk=chunk)


# -- the op ----------------------------------------------------------------------------------------
def winograd_functions(algorithm):
    """(kernel transform, forward, input gradient) of "winograd" (None: TransformedKernels'
    default, F(2x2, 3x3)) or "winograd4"."""
    if algorithm == "winograd4":
        return transform_kernel4, winograd4_conv, winograd4_grad_input
    return None, winograd_conv, winograd_grad_input


class FastConv2d(Conv2d):
    """conv.Conv2d with the algorithm chosen per call (``self.chosen``) and the fast gradients.

    ``kernels``: winograd.TransformedKernels of W, or None (then made at the call when Winograd
    is chosen). Kept for backward: as conv.Conv2d, plus the kernels for a Winograd gradient.
    """

    name = "Conv2d"           # the same op as conv.Conv2d, computed faster: traces say Conv2d

    def __init__(self, *, stride=1, pad=0, algorithm="auto", kernels=None):
        super().__init__(stride=stride, pad=pad)
        self.algorithm, self.kernels = algorithm, kernels

    def forward(self, x, W, b=None):
        conv2d_shapes(x.shape, W.shape, None if b is None else b.shape, self.stride, self.pad)
        self.chosen = choose_algorithm(self.algorithm, W.shape, self.stride, self.pad)
        if self.kernels is not None and self.kernels.W is not W:
            raise ValueError("conv2d: kernels were made from another weight array than W; make "
                             "them again, TransformedKernels(W), after replacing the weights")
        if self.chosen == "im2col":
            return super().forward(x, W, b)
        if self.chosen == "shifted":
            y = shifted_conv(x, W, b, self.pad)
            self.keep_for_backward(x, W)
            return y
        self.kernels = self.kernels or TransformedKernels(W)
        transform, conv, _ = winograd_functions(self.chosen)
        U = self.kernels.transformed(get_array_module(x).result_type(x, W), transform)
        y = conv(x, U, self.pad, b)
        self.keep_for_backward(x, W)
        return y

    def grad_input(self, gy):
        """gx by the algorithm of the forward: Winograd, shifted views or im2col of gy (a
        convolution of gy with the flipped kernel), or col2im (the reference)."""
        if self.chosen == "shifted":
            return shifted_conv(gy, flipped_kernel(self.W), None,
                                gradient_pad(self.pad, self.W_shape[2:]))
        if self.chosen.startswith("winograd"):
            transform, _, grad_input = winograd_functions(self.chosen)
            U = self.kernels.transformed(get_array_module(gy).result_type(gy, self.W), transform)
            return grad_input(gy, U, self.pad)
        if as_conv_applies(self.W_shape, self.stride, self.pad):
            return grad_input_as_conv(gy, self.W, self.pad)
        return super().grad_input(gy)


def conv2d(x, W, b=None, *, stride=1, pad=0, algorithm="auto", kernels=None):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with W (O, C, KH, KW), plus b (O,).

    Returns (N, O, OH, OW), OH = 1 + (H + pt + pb - KH) // sh, OW = 1 + (W + pl + pr - KW) // sw.
    ``stride``: int or (sh, sw). ``pad``: int, (ph, pw) or (top, bottom, left, right), zeros.
    ``algorithm``: "im2col", "shifted" (stride 1, pads < kernel: shifted.py), "winograd" or
    "winograd4" (3x3, stride 1, pads <= 2: F(2x2, 3x3), F(4x4, 3x3)) or "auto"
    (choose_algorithm).
    ``kernels``: TransformedKernels(W.data) kept by the owner of a frozen W, so that Winograd
    transforms it once (VGG19 passes its own); without them it is transformed at each call.
    """
    f = FastConv2d(stride=stride, pad=pad, algorithm=algorithm, kernels=kernels)
    return f(x, W) if b is None else f(x, W, b)
