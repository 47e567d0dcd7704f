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

Fast path (VGG's pools). When the windows tile the input (stride = kernel, no padding read), the
average pool is memory-bound: one read of x, one write of y. ``avg_pool2d_forward_blocks`` adds
the KH rows of each window first (whole rows: contiguous, vectorised) into a small band buffer
that stays in cache, then the KW columns of that band; its backward writes gy / (KH*KW) straight
into gx at each window offset, with no zeroed gxpad and no col2im
(``avg_pool2d_grad_input_blocks``). The offset loops (``*_offsets``) stay as the reference for every other case, and tests check that
both paths agree.

Memory. Each op's ``*_buffers`` function gives the elements of every array it allocates (for
a memory model; tests check them against what the op allocates).
"""
import numpy as np

from .backend import get_array_module
from .im2col import as_pad, as_pair, col2im, output_size, pad_input, unpad, window_slices
from .tensor import Function

BAND_ELEMENTS = 1 << 18   # the fast path's band buffer: 1 MB of float32, within every L2 cache
                          # (speed measured flat from 2^16 to 2^20 elements: bench/README.md)


def pool_args(x_shape, kernel, stride, pad, *, op):
    """Parse a pool's kernel, stride (default: the kernel) and pad; return them and (OH, OW)."""
    kernel = as_pair(kernel, op=op, name="kernel")
    stride = kernel if stride is None else as_pair(stride, op=op, name="stride")
    pad = as_pad(pad, op=op)
    return kernel, stride, pad, output_size(x_shape, kernel, stride, pad, op=op)


def tiles_the_input(x_shape, kernel, stride, pad, out_size):
    """True when the windows neither overlap nor leave gaps nor read padding: stride = kernel,
    no top or left pad, and the last window ends inside x (VGG's bottom/right pad of 1 is then
    never read: 2*OH <= H for even H)."""
    (KH, KW), (pt, _, pl, _), (OH, OW) = kernel, pad, out_size
    return (tuple(stride) == tuple(kernel) and pt == pl == 0 and KH * OH <= x_shape[2]
            and KW * OW <= x_shape[3])


def band_channels(C, OH, W):
    """Channels per band of the fast path: its band (c, OH, W) within BAND_ELEMENTS (at least 1)."""
    return max(1, min(C, BAND_ELEMENTS // (OH * W)))


def _sizes(x_shape, kernel, stride, pad, *, op):
    """(inputs N*C*H*W, padded N*C*Hp*Wp or 0 without padding, outputs N*C*OH*OW)."""
    (KH, KW), stride, (pt, pb, pl, pr), (OH, OW) = pool_args(x_shape, kernel, stride, pad, op=op)
    N, C, H, W = x_shape
    padded = N * C * (H + pt + pb) * (W + pl + pr)
    return N * C * H * W, padded if any((pt, pb, pl, pr)) else 0, N * C * OH * OW


def _avg_fast_path(x_shape, kernel, stride, pad):
    """True when avg_pool2d takes the *_blocks functions (tiles_the_input)."""
    kernel, stride, pad, out_size = pool_args(x_shape, kernel, stride, pad, op="avg_pool2d")
    return tiles_the_input(x_shape, kernel, stride, pad, out_size)


def avg_pool2d_forward_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what avg_pool2d_forward allocates: y; on the reference path xpad (0
    without padding); on the fast path band, its row sums (c, OH, W)."""
    _, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="avg_pool2d")
    if not _avg_fast_path(x_shape, kernel, stride, pad):
        return dict(y=outputs, xpad=padded, band=0)
    (_, C, _, W), OH = x_shape, pool_args(x_shape, kernel, stride, pad, op="avg_pool2d")[3][0]
    return dict(y=outputs, xpad=0, band=band_channels(C, OH, W) * OH * W)


def avg_pool2d_grad_input_buffers(x_shape, kernel, stride, pad):
    """{name: elements} of what avg_pool2d_grad_input allocates: gxpad (gx is a view of it; gx
    itself on the fast path) and share, gy / (KH*KW)."""
    inputs, padded, outputs = _sizes(x_shape, kernel, stride, pad, op="avg_pool2d")
    fast = _avg_fast_path(x_shape, kernel, stride, pad)
    return dict(gxpad=inputs if fast else padded or inputs, share=outputs)


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
    """y = avg_pool2d(x) on arrays: x (N, C, H, W) -> y (N, C, OH, OW); zero padding counts.

    Windows that tile the input take the fast path (avg_pool2d_forward_blocks), others the
    reference loop over the window offsets (avg_pool2d_forward_offsets).
    """
    kernel, stride, pad, (OH, OW) = pool_args(x.shape, kernel, stride, pad, op="avg_pool2d")
    if tiles_the_input(x.shape, kernel, stride, pad, (OH, OW)):
        return avg_pool2d_forward_blocks(x, kernel, OH, OW)
    return avg_pool2d_forward_offsets(x, kernel, stride, pad)


def avg_pool2d_forward_blocks(x, kernel, OH, OW):
    """avg_pool2d_forward for windows that tile x (tiles_the_input): the fast path.

    Per band of channels: band[c, oh, :] = sum_i x[n, c, KH*oh + i, :] (whole rows), then
    y[n, c, oh, ow] = sum_j band[c, oh, KW*ow + j] / (KH*KW). Rows and columns past the last
    whole window are not read. The band (band_channels) stays in cache between the two sums.
    """
    xp, (N, C, _, W), (KH, KW) = get_array_module(x), x.shape, kernel
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    cb = band_channels(C, OH, W)
    band = xp.empty((cb, OH, W), dtype=x.dtype)
    for n in range(N):
        for c0 in range(0, C, cb):
            c1 = min(C, c0 + cb)
            rows = band[:c1 - c0]
            _sum_into(rows, [x[n, c0:c1, i:KH * OH:KH] for i in range(KH)])   # each (c, OH, W)
            _sum_into(y[n, c0:c1], [rows[:, :, j:KW * OW:KW] for j in range(KW)])  # (c, OH, OW)
    y /= KH * KW
    return y


def _sum_into(out, terms):
    """out = terms[0] + terms[1] + ..., added in that order, with no temporary array."""
    xp = get_array_module(out)
    if len(terms) == 1:
        xp.copyto(out, terms[0])
        return
    xp.add(terms[0], terms[1], out=out)
    for term in terms[2:]:
        out += term


def avg_pool2d_forward_offsets(x, kernel, stride, pad):
    """avg_pool2d_forward as a loop over the KH*KW window offsets: any stride and padding; the
    reference for avg_pool2d_forward_blocks."""
    (KH, KW), stride, pad, (OH, OW) = pool_args(x.shape, kernel, stride, pad, op="avg_pool2d")
    xpad = pad_input(x, pad)
    y = get_array_module(x).zeros(x.shape[:2] + (OH, OW), dtype=x.dtype)
    for _, _, rows, cols in window_slices(KH, KW, stride, OH, OW):
        y += xpad[:, :, rows, cols]                       # (N, C, OH, OW) strided slice
    y /= KH * KW
    return y


def avg_pool2d_grad_input(gy, x_shape, kernel, stride, pad):
    """gx = dL/dx for gy (N, C, OH, OW); returns gx of shape x_shape (N, C, H, W).

    Windows that tile the input take avg_pool2d_grad_input_blocks, others the reference
    avg_pool2d_grad_input_offsets (where the derivation is).
    """
    kernel, stride, pad, out_size = pool_args(x_shape, kernel, stride, pad, op="avg_pool2d")
    if tiles_the_input(x_shape, kernel, stride, pad, out_size):
        return avg_pool2d_grad_input_blocks(gy, x_shape, kernel)
    return avg_pool2d_grad_input_offsets(gy, x_shape, kernel, stride, pad)


def avg_pool2d_grad_input_blocks(gy, x_shape, kernel):
    """avg_pool2d_grad_input for windows that tile x: each window's entries get gy / (KH*KW).

    gx[n, c, KH*oh + i, KW*ow + j] = gy[n, c, oh, ow] / (KH*KW): one strided write per window
    offset (i, j), band of channels by band so that the band's share is read from cache. Rows
    and columns past the last whole window, which no window reads, get 0.
    """
    xp, (N, C, H, W), (KH, KW), (OH, OW) = get_array_module(gy), x_shape, kernel, gy.shape[2:]
    gx = xp.empty(x_shape, dtype=gy.dtype)
    share = gy / (KH * KW)
    gx[:, :, KH * OH:] = 0
    gx[:, :, :, KW * OW:] = 0
    cb = band_channels(C, OH, W)
    for n in range(N):
        for c0 in range(0, C, cb):
            for i in range(KH):
                for j in range(KW):                                   # (c, OH, OW) strided
                    gx[n, c0:c0 + cb, i:KH * OH:KH, j:KW * OW:KW] = share[n, c0:c0 + cb]
    return gx


def avg_pool2d_grad_input_offsets(gy, x_shape, kernel, stride, pad):
    """avg_pool2d_grad_input by col2im: any stride and padding; the reference.

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
