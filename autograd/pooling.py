"""Average and max pooling: a reduction over each window, looped over the KH*KW window offsets.

Notation as in im2col.py. For x (N, C, H, W) and a KH x KW window moved by (sh, sw), both pools
give y (N, C, OH, OW), OH = 1 + (H + pt + pb - KH) // sh, one value per window and channel:

    avg:  y[n, c, oh, ow] = (1 / (KH*KW)) * sum_{i, j} xpad[n, c, sh*oh + i, sw*ow + j]
    max:  y[n, c, oh, ow] = max_{i, j} xpad[n, c, sh*oh + i, sw*ow + j]

Padding. For the average, the padding is zeros and they count: the sum is always divided by
KH*KW, even for a window that overlaps the border (PyTorch's ``count_include_pad=True``). For the
max, a padded cell is -inf, so it is never chosen; every pad must then be smaller than the kernel,
so that each window holds at least one real pixel.

Neither pool builds the im2col matrix: for a fixed offset (i, j), the (oh, ow) entries of all
windows form one strided slice of xpad (``window_slices``), so each op is a loop of KH*KW array
operations. The stride defaults to the kernel size (non-overlapping windows), as in PyTorch.

Memory. Each op's ``*_buffers`` function gives the elements of every array it allocates (for
a memory model; tests check them against what the op allocates).
"""
import numpy as np

from .backend import get_array_module
from .im2col import as_pad, as_pair, col2im, output_size, pad_input, unpad, window_slices
from .tensor import Function


def pool_args(x_shape, kernel, stride, pad, *, op):
    """Parse a pool's kernel, stride (default: the kernel) and pad; return them and (OH, OW)."""
    kernel = as_pair(kernel, op=op, name="kernel")
    stride = kernel if stride is None else as_pair(stride, op=op, name="stride")
    pad = as_pad(pad, op=op)
    return kernel, stride, pad, output_size(x_shape, kernel, stride, pad, op=op)


def _sizes(x_shape, kernel, stride, pad, *, op):
    """(inputs N*C*H*W, padded N*C*Hp*Wp or 0 without padding, outputs N*C*OH*OW)."""
    (KH, KW), stride, (pt, pb, pl, pr), (OH, OW) = pool_args(x_shape, kernel, stride, pad, op=op)
    N, C, H, W = x_shape
    padded = N * C * (H + pt + pb) * (W + pl + pr)
    return N * C * H * W, padded if any((pt, pb, pl, pr)) else 0, N * C * OH * OW


def avg_pool2d_forward_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what avg_pool2d_forward allocates: y and xpad (0 without padding)."""
    _, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="avg_pool2d")
    return dict(y=outputs, xpad=padded)


def avg_pool2d_grad_input_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what avg_pool2d_grad_input allocates: gxpad (gx is a view of it) and
    share, gy / (KH*KW)."""
    inputs, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="avg_pool2d")
    return dict(gxpad=padded or inputs, share=outputs)


def max_pool2d_forward_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what max_pool2d_forward allocates: y, xpad (0 without padding),
    argmax (np.min_scalar_type(KH*KW - 1): one byte up to 16x16 windows) and larger (two boolean
    comparisons alive at once, one byte each)."""
    _, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="max_pool2d")
    return dict(y=outputs, xpad=padded, argmax=outputs, larger=2 * outputs)


def max_pool2d_grad_input_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what max_pool2d_grad_input allocates: gxpad (gx is a view of it),
    routed (gy where argmax picks one offset) and mask (its boolean, one byte each)."""
    inputs, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="max_pool2d")
    return dict(gxpad=padded or inputs, routed=outputs, mask=outputs)


def avg_pool2d_forward(x, kernel, stride, pad):
    """y = avg_pool2d(x) on arrays: x (N, C, H, W) -> y (N, C, OH, OW); zero padding counts."""
    (KH, KW), stride, pad, (OH, OW) = pool_args(x.shape, kernel, stride, pad, op="avg_pool2d")
    xpad = pad_input(x, pad)
    y = get_array_module(x).zeros(x.shape[:2] + (OH, OW), dtype=x.dtype)
    for _, _, rows, cols in window_slices(KH, KW, stride, OH, OW):
        y += xpad[:, :, rows, cols]                       # (N, C, OH, OW) strided slice
    y /= KH * KW
    return y


def avg_pool2d_grad_input(gy, x_shape, kernel, stride, pad):
    """gx = dL/dx for gy (N, C, OH, OW); returns gx of shape x_shape (N, C, H, W).

    Derivation. y = (1/(KH*KW)) * sum over the window's columns of im2col(xpad), so every entry of
    a window receives gy / (KH*KW): gcol[n, c, i, j, oh, ow] = gy[n, c, oh, ow] / (KH*KW) for all
    (i, j), and gxpad = col2im(gcol), the adjoint of im2col. gx is gxpad without the padding.
    """
    (KH, KW), stride, pad, (OH, OW) = pool_args(x_shape, kernel, stride, pad, op="avg_pool2d")
    xp = get_array_module(gy)
    (N, C, H, W), (pt, pb, pl, pr) = x_shape, pad
    gxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=gy.dtype)
    g = (gy / (KH * KW))[:, :, None, None]               # (N, C, OH, OW) -> (N, C, 1, 1, OH, OW)
    gcol = xp.broadcast_to(g, (N, C, KH, KW, OH, OW))    # the same gy/(KH*KW) at every offset
    return unpad(col2im(gcol, stride=stride, out=gxpad), pad)


def max_pool2d_forward(x, kernel, stride, pad):
    """(y, argmax) = max_pool2d(x) on arrays: x (N, C, H, W) -> both (N, C, OH, OW).

    argmax[n, c, oh, ow] = i*KW + j, the offset of the window's largest entry (the first one, in
    row-major order, when several are equal), in the smallest unsigned integer type that holds it.
    """
    (KH, KW), stride, pad, (OH, OW) = pool_args(x.shape, kernel, stride, pad, op="max_pool2d")
    if pad[0] >= KH or pad[1] >= KH or pad[2] >= KW or pad[3] >= KW:
        raise ValueError(f"max_pool2d: every pad must be smaller than the kernel {KH}x{KW}, or a "
                         f"window could hold only padding; got pad {pad}")
    xp = get_array_module(x)
    xpad = pad_input(x, pad, value=-np.inf)
    y = xp.full(x.shape[:2] + (OH, OW), -np.inf, dtype=x.dtype)
    argmax = xp.zeros(y.shape, dtype=np.min_scalar_type(KH * KW - 1))
    for i, j, rows, cols in window_slices(KH, KW, stride, OH, OW):
        window = xpad[:, :, rows, cols]                   # (N, C, OH, OW) strided slice
        larger = window > y                               # strictly: the first maximum is kept
        xp.copyto(y, window, where=larger)
        xp.copyto(argmax, i * KW + j, where=larger)
    return y, argmax


def max_pool2d_grad_input(gy, argmax, x_shape, kernel, stride, pad):
    """gx = dL/dx for gy and argmax (N, C, OH, OW); returns gx of shape x_shape (N, C, H, W).

    Derivation. y = xpad[window's argmax], so dy/dxpad is 1 at the chosen entry and 0 elsewhere:
    gcol[n, c, i, j, oh, ow] = gy[n, c, oh, ow] where argmax = i*KW + j, else 0, and
    gxpad = col2im(gcol). Done offset by offset (no (N, C, KH, KW, OH, OW) array); overlapping
    windows (stride < kernel) add their contributions.
    """
    (KH, KW), stride, pad, (OH, OW) = pool_args(x_shape, kernel, stride, pad, op="max_pool2d")
    xp = get_array_module(gy)
    (N, C, H, W), (pt, pb, pl, pr) = x_shape, pad
    gxpad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=gy.dtype)
    for i, j, rows, cols in window_slices(KH, KW, stride, OH, OW):
        gxpad[:, :, rows, cols] += gy * (argmax == i * KW + j)   # (N, C, OH, OW) strided slice
    return unpad(gxpad, pad)


class AvgPool2d(Function):
    """y = avg_pool2d(x) (see avg_pool2d). Kept for backward: only the input's shape."""

    def __init__(self, kernel, *, stride=None, pad=0):
        self.kernel, self.stride, self.pad = kernel, stride, pad

    def forward(self, x):
        self.x_shape = x.shape
        return avg_pool2d_forward(x, self.kernel, self.stride, self.pad)

    def backward(self, gy):
        return (avg_pool2d_grad_input(gy, self.x_shape, self.kernel, self.stride, self.pad),)


class MaxPool2d(Function):
    """y = max_pool2d(x) (see max_pool2d). Kept for backward: the argmax and the input's shape."""

    def __init__(self, kernel, *, stride=None, pad=0):
        self.kernel, self.stride, self.pad = kernel, stride, pad

    def forward(self, x):
        y, argmax = max_pool2d_forward(x, self.kernel, self.stride, self.pad)
        if self.recording:
            self.x_shape, self.argmax = x.shape, argmax
        return y

    def backward(self, gy):
        return (max_pool2d_grad_input(gy, self.argmax, self.x_shape, self.kernel, self.stride,
                                      self.pad),)


def avg_pool2d(x, kernel, *, stride=None, pad=0):
    """Average over KH x KW windows of x (N, C, H, W) -> (N, C, OH, OW).

    ``kernel``: int or (KH, KW); ``stride``: int or (sh, sw), default the kernel; ``pad``: int,
    (ph, pw) or (top, bottom, left, right). Padding is zeros that count: always divided by KH*KW.
    """
    return AvgPool2d(kernel, stride=stride, pad=pad)(x)


def max_pool2d(x, kernel, *, stride=None, pad=0):
    """Maximum over KH x KW windows of x (N, C, H, W) -> (N, C, OH, OW).

    ``kernel``, ``stride`` (default the kernel) and ``pad`` as in avg_pool2d; padded cells are
    -inf and never chosen, and every pad must be smaller than the kernel.
    """
    return MaxPool2d(kernel, stride=stride, pad=pad)(x)
