"""Convolution as a matrix product (im2col), and its two backward passes.

Read im2col.py first: it defines the notation (N, C, H, W, O, KH, KW, OH, OW, stride (sh, sw), pad
(pt, pb, pl, pr)) and ``col``; here CKK = C*KH*KW, the size of one window. For x (N, C, H, W),
W (O, C, KH, KW) and b (O,), conv2d computes

    y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] * xpad[n, c, sh*oh + i, sw*ow + j]

(a cross-correlation, as in every deep-learning library), y of shape (N, O, OH, OW). With each
image's col seen as a matrix (CKK, OH*OW) and W as a matrix Wm (O, CKK), that sum is one large
matrix product per image:

    y[n] = Wm @ col[n]        (O, CKK) @ (CKK, OH*OW) -> (O, OH*OW), i.e. (O, OH, OW)

The product comes out in NCHW order, so no transposes are needed anywhere (a channels-last layout
would need one on the way in and one on the way out, the public API being NCHW).

Backward, with gy = dL/dy (derivations on the functions below):
    input:   gcol[n] = Wm^T @ gy[n], then gx = col2im(gcol) without the padding (the reference);
             for stride 1 and O <= C, the same gx as an im2col convolution of gy with the
             flipped kernel (grad_input_as_conv), which skips col2im's additions
    weight:  gWm = sum_n gy[n] @ col[n]^T          (skipped when W is frozen)
    bias:    gb[o] = sum over n, oh, ow of gy[n, o, oh, ow]

Memory. col is C*KH*KW/(sh*sw) times larger than x: for VGG-19's conv1_2 at 512 px it would be
~600 MB. So the work goes in chunks (groups of images, or bands of output rows of one image) whose
col has at most ``chunk`` elements, in one reused buffer. On the CPU a chunk of 16 MB (float32)
mostly stays in the shared cache between im2col writing it and the matrix product reading it,
and keeps the products few: each one wakes the BLAS library's threads, which costs dearly when
other programs share the cores (many small products ran up to 10x slower on a busy 2-core
machine). On the GPU larger chunks (128 MB) keep the device busy with few, large products.
And col is never kept for backward: Conv2d keeps W for the input gradient and x for the weight
gradient, and recomputes col when the weight gradient is asked for.

Algorithms. ``conv2d(..., algorithm=...)``: "im2col" (this file), "winograd" (winograd.py:
F(2x2, 3x3) for 3x3 stride-1 convolutions, 2.25x fewer multiplications, forward and input
gradient) or "auto", which picks per layer by the rule of ``choose_algorithm``.
"""
import numpy as np

from .backend import get_array_module
from .im2col import as_pad, as_pair, col2im, im2col, output_size, pad_input, unpad
from .tensor import Function, Tensor
from .winograd import TransformedKernels, supports, winograd_conv, winograd_grad_input

CHUNK_CPU = 1 << 22   # the most elements of a col buffer on the CPU: 16 MB in float32
CHUNK_GPU = 1 << 25   # and on the GPU: 128 MB in float32
ALGORITHMS = ("auto", "im2col", "winograd")
WINOGRAD_MIN_CHANNELS = 128   # "auto" takes Winograd when C and O are both at least this


def default_chunk(xp):
    """The col buffer size (elements) for arrays of module xp, when the caller gives none."""
    return CHUNK_CPU if xp is np else CHUNK_GPU


def conv2d_shapes(x_shape, W_shape, b_shape, stride, pad):
    """Check conv2d's argument shapes; return (OH, OW). Raises ValueError naming the shapes."""
    if len(W_shape) != 4:
        raise ValueError(f"conv2d: W must have shape (O, C, KH, KW); got shape {W_shape}")
    if len(x_shape) == 4 and x_shape[1] != W_shape[1]:
        raise ValueError(f"conv2d: x has {x_shape[1]} channels (shape {x_shape}) but W expects "
                         f"{W_shape[1]} (shape {W_shape})")
    if b_shape is not None and tuple(b_shape) != (W_shape[0],):
        raise ValueError(f"conv2d: b must have shape ({W_shape[0]},), one per output channel of "
                         f"W {W_shape}; got shape {tuple(b_shape)}")
    return output_size(x_shape, W_shape[2:], stride, pad, op="conv2d")


def chunks(N, OH, row_elements, chunk):
    """Yield (images, rows) slices that cover (N, OH), each chunk's col of <= ``chunk`` elements.

    ``row_elements`` = CKK*OW, the col entries of one output row of one image. Whole images are
    grouped when one fits; otherwise one image at a time, in bands of output rows (at least one).
    """
    image_elements = row_elements * OH
    if image_elements <= chunk:
        step = chunk // image_elements                               # images per chunk
        for n0 in range(0, N, step):
            yield slice(n0, min(n0 + step, N)), slice(0, OH)
        return
    step = max(1, chunk // row_elements)                              # output rows per chunk
    for n in range(N):
        for r0 in range(0, OH, step):
            yield slice(n, n + 1), slice(r0, min(r0 + step, OH))


def input_rows(rows, KH, sh):
    """The padded-input rows that the output rows ``rows`` read: from sh*r0 to sh*(r1-1) + KH."""
    return slice(sh * rows.start, sh * (rows.stop - 1) + KH)


def _buffer(xp, plan, row_elements, dtype):
    """One flat buffer big enough for the largest chunk of ``plan``."""
    largest = max((im.stop - im.start) * (r.stop - r.start) for im, r in plan)
    return xp.empty(largest * row_elements, dtype=dtype)


def _cols(xpad, KH, KW, stride, OH, OW, chunk):
    """Yield (images, rows, colm): each chunk's col as matrices (n, CKK, r*OW), in one buffer."""
    N, CKK = xpad.shape[0], xpad.shape[1] * KH * KW
    plan = list(chunks(N, OH, CKK * OW, chunk))
    buf = _buffer(get_array_module(xpad), plan, CKK * OW, xpad.dtype)
    for images, rows in plan:
        col = im2col(xpad[images, :, input_rows(rows, KH, stride[0])], KH, KW,
                     stride=stride, out=buf)                           # (n, C, KH, KW, r, OW)
        n, r = col.shape[0], col.shape[4]
        yield images, rows, col.reshape(n, CKK, r * OW)              # -> (n, CKK, r*OW)


def conv2d_forward(x, W, b, stride, pad, *, chunk=None):
    """y = conv2d(x, W, b) on arrays: x (N, C, H, W), W (O, C, KH, KW), b (O,) or None.

    Returns y (N, O, OH, OW) in the common dtype of x and W. Per chunk of images and output rows:
    y[n, :, rows] = Wm @ col[n, .., rows], written straight into y (``out=``, no copy). ``chunk``
    is the most elements of the col buffer (default: ``default_chunk``), here and below.
    """
    stride, pad = as_pair(stride, op="conv2d", name="stride"), as_pad(pad, op="conv2d")
    OH, OW = conv2d_shapes(x.shape, W.shape, None if b is None else b.shape, stride, pad)
    xp = get_array_module(x, W, b)
    dtype = xp.result_type(x, W)
    N, (O, C, KH, KW) = x.shape[0], W.shape
    Wm = W.astype(dtype, copy=False).reshape(O, C * KH * KW)   # (O, C, KH, KW) -> (O, CKK)
    y = xp.empty((N, O, OH, OW), dtype=dtype)
    xpad = pad_input(x.astype(dtype, copy=False), pad)
    for images, rows, colm in _cols(xpad, KH, KW, stride, OH, OW, chunk or default_chunk(xp)):
        n, r = colm.shape[0], rows.stop - rows.start
        ym = y[images, :, rows].reshape(n, O, r * OW)   # a view: (n, O, r, OW) -> (n, O, r*OW)
        xp.matmul(Wm, colm, out=ym)                 # (O, CKK) @ (n, CKK, r*OW) -> (n, O, r*OW)
    if b is not None:
        y += b.reshape(1, O, 1, 1)                                    # (O,) -> (1, O, 1, 1)
    return y


def conv2d_grad_input(gy, W, x_shape, stride, pad, *, chunk=None):
    """gx = dL/dx for gy (N, O, OH, OW), W (O, C, KH, KW); returns gx of shape x_shape.

    Derivation. y[n] = Wm @ col[n] is linear in col, so dL/dcol[n] = Wm^T @ gy[n]
    ((CKK, O) @ (O, OH*OW)). col = im2col(xpad) is linear in xpad, and the gradient through a
    linear map is its adjoint, col2im: each xpad pixel receives the sum of gcol over every window
    position that copied it. Padding cells are constants, so gx is the inner part of gxpad.
    """
    stride, pad = as_pair(stride, op="conv2d", name="stride"), as_pad(pad, op="conv2d")
    OH, OW = conv2d_shapes(x_shape, W.shape, None, stride, pad)
    xp = get_array_module(gy, W)
    (N, C, H, Wd), (O, _, KH, KW), (pt, pb, pl, pr) = x_shape, W.shape, pad
    CKK = C * KH * KW
    gxpad = xp.zeros((N, C, H + pt + pb, Wd + pl + pr), dtype=xp.result_type(gy, W))
    WmT = W.reshape(O, CKK).T                                  # (O, C, KH, KW) -> (CKK, O)
    plan = list(chunks(N, OH, CKK * OW, chunk or default_chunk(xp)))
    buf = _buffer(xp, plan, CKK * OW, gxpad.dtype)
    for images, rows in plan:
        n, r = images.stop - images.start, rows.stop - rows.start
        gym = gy[images, :, rows].reshape(n, O, r * OW)  # (n, O, r, OW) -> (n, O, r*OW)
        gcol = buf[:n * CKK * r * OW].reshape(n, CKK, r * OW)  # flat -> (n, CKK, r*OW)
        xp.matmul(WmT, gym, out=gcol)               # (CKK, O) @ (n, O, r*OW) -> (n, CKK, r*OW)
        col2im(gcol.reshape(n, C, KH, KW, r, OW), stride=stride,     # -> (n, C, KH, KW, r, OW)
               out=gxpad[images, :, input_rows(rows, KH, stride[0])])
    return unpad(gxpad, pad)


def conv2d_grad_weight(gy, x, W_shape, stride, pad, *, chunk=None):
    """gW = dL/dW for gy (N, O, OH, OW), x (N, C, H, W); returns gW of shape W_shape.

    Derivation. y[n] = Wm @ col[n], so dL/dWm = sum_n gy[n] @ col[n]^T
    ((O, OH*OW) @ (OH*OW, CKK) -> (O, CKK)), summed over images and over the chunks of
    output rows (the sum over oh, ow splits into bands). col is recomputed here, chunk by chunk.
    """
    stride, pad = as_pair(stride, op="conv2d", name="stride"), as_pad(pad, op="conv2d")
    OH, OW = conv2d_shapes(x.shape, W_shape, None, stride, pad)
    xp = get_array_module(gy, x)
    dtype = xp.result_type(gy, x)
    O, C, KH, KW = W_shape
    gWm = xp.zeros((O, C * KH * KW), dtype=dtype)
    xpad = pad_input(x.astype(dtype, copy=False), pad)
    for images, rows, colm in _cols(xpad, KH, KW, stride, OH, OW, chunk or default_chunk(xp)):
        n, r = colm.shape[0], rows.stop - rows.start
        gym = gy[images, :, rows].reshape(n, O, r * OW)  # (n, O, r, OW) -> (n, O, r*OW)
        for k in range(n):
            gWm += gym[k] @ colm[k].T               # (O, r*OW) @ (r*OW, CKK) -> (O, CKK)
    return gWm.reshape(W_shape)                                # (O, CKK) -> (O, C, KH, KW)


def conv2d_grad_bias(gy):
    """gb = dL/db: y[n, o, oh, ow] = b[o] + ..., so gb[o] = sum_{n, oh, ow} gy[n, o, oh, ow]."""
    return gy.sum(axis=(0, 2, 3))


def choose_algorithm(algorithm, W_shape, stride, pad):
    """"im2col" or "winograd" for this convolution; ``algorithm`` is one of ALGORITHMS.

    The rule for "auto", measured on a 2-core CPU against PyTorch (docs/winograd.md): Winograd
    F(2x2, 3x3) where it applies (3x3, stride 1, pads <= 2) and both C and O are at least
    WINOGRAD_MIN_CHANNELS; there its 2.25x fewer multiplications outweigh the transforms, which
    cost O(C + O) per tile. Below that (VGG's 64-channel layers) im2col is faster.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv2d: algorithm must be one of {', '.join(ALGORITHMS)}; "
                         f"got {algorithm!r}")
    fits = supports(W_shape, stride, pad)
    if algorithm == "winograd" and not fits:
        raise ValueError(f"conv2d: algorithm='winograd' needs a 3x3 kernel, stride 1 and pads "
                         f"<= 2; got W {tuple(W_shape)}, stride {stride}, pad {pad}")
    if algorithm == "auto":
        big = min(W_shape[0], W_shape[1]) >= WINOGRAD_MIN_CHANNELS
        return "winograd" if fits and big else "im2col"
    return algorithm


def flipped_kernel(W):
    """Wg (C, O, KH, KW), Wg[c, o, i, j] = W[o, c, KH-1-i, KW-1-j]: the input gradient's kernel."""
    return W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]   # (O, C, KH, KW) -> (C, O, KH, KW)


def grad_input_as_conv(gy, W, pad, *, chunk=None):
    """gx for stride 1, as a convolution of gy with the flipped kernel: im2col, no col2im.

    Derivation. y[oh] = sum_i W[i] xpad[oh + i] (one spatial axis shown, channels as matrices),
    so gxpad[h] = sum_i W[i]^T gy[h - i]; with i' = KH-1-i that is a cross-correlation of gy,
    padded by KH-1 on each side, with Wg (flipped_kernel). Removing xpad's pad rows, gy needs
    KH-1-pt rows on top, KH-1-pb at the bottom (the same for columns). Needs every pad <= K-1.
    """
    O, C, KH, KW = W.shape
    pt, pb, pl, pr = pad
    gpad = (KH - 1 - pt, KH - 1 - pb, KW - 1 - pl, KW - 1 - pr)
    Wg = get_array_module(W).ascontiguousarray(flipped_kernel(W))
    return conv2d_forward(gy, Wg, None, 1, gpad, chunk=chunk)


def as_conv_applies(W_shape, stride, pad):
    """grad_input_as_conv is used for stride 1, pads <= K-1, and O <= C.

    Its im2col copies O*KH*KW rows where col2im adds back C*KH*KW: with O > C (conv1_1's 3 -> 64)
    col2im is cheaper; with O <= C the copy wins over col2im's read-modify-write passes.
    """
    O, C, KH, KW = W_shape
    pt, pb, pl, pr = pad
    return (tuple(stride) == (1, 1) and O <= C and max(pt, pb) <= KH - 1
            and max(pl, pr) <= KW - 1)


class Conv2d(Function):
    """y = conv2d(x, W[, b]) (see conv2d). Inputs (x, W) or (x, W, b).

    Kept for backward: W when x needs a gradient (and, for Winograd, W's transformed kernels),
    x when W does; never the im2col matrix. Each gradient is computed only when its input needs
    it: a frozen W costs no weight-gradient work.
    """

    def __init__(self, *, stride=1, pad=0, algorithm="auto", kernels=None):
        self.stride = as_pair(stride, op="conv2d", name="stride")
        self.pad = as_pad(pad, op="conv2d")
        self.algorithm = algorithm
        self.kernels = kernels        # winograd.TransformedKernels of W, or None: made when used

    def forward(self, x, W, b=None):
        conv2d_shapes(x.shape, W.shape, None if b is None else b.shape, self.stride, self.pad)
        self.chosen = choose_algorithm(self.algorithm, W.shape, self.stride, self.pad)
        if self.chosen == "winograd":
            self.kernels = self.kernels or TransformedKernels(W)
            U = self.kernels.transformed(get_array_module(x).result_type(x, W))
            y = winograd_conv(x, U, self.pad, b)
        else:
            y = conv2d_forward(x, W, b, self.stride, self.pad)
        if self.recording:
            self.x_shape, self.W_shape = x.shape, W.shape
            self.W = W if self.needs_grad[0] else None
            self.x = x if self.needs_grad[1] else None
        return y

    def grad_input(self, gy):
        """gx by the algorithm of the forward: Winograd, im2col of gy, or col2im (the reference)."""
        if self.chosen == "winograd":
            U = self.kernels.transformed(get_array_module(gy).result_type(gy, self.W))
            return winograd_grad_input(gy, U, self.pad)
        if as_conv_applies(self.W_shape, self.stride, self.pad):
            return grad_input_as_conv(gy, self.W, self.pad)
        return conv2d_grad_input(gy, self.W, self.x_shape, self.stride, self.pad)

    def backward(self, gy):
        gx = gW = None
        if self.needs_grad[0]:
            gx = self.grad_input(gy)
        if self.needs_grad[1]:
            gW = conv2d_grad_weight(gy, self.x, self.W_shape, self.stride, self.pad)
        if len(self.needs_grad) == 2:
            return gx, gW
        return gx, gW, conv2d_grad_bias(gy) if self.needs_grad[2] else None


def conv2d(x, W, b=None, *, stride=1, pad=0, algorithm="auto"):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with W (O, C, KH, KW), plus b (O,).

    Returns (N, O, OH, OW), OH = 1 + (H + pt + pb - KH) // sh, OW = 1 + (W + pl + pr - KW) // sw.
    ``stride``: int or (sh, sw). ``pad``: int, (ph, pw) or (top, bottom, left, right), zeros.
    ``algorithm``: "im2col", "winograd" (3x3, stride 1, pads <= 2) or "auto" (choose_algorithm).
    A frozen W Tensor (requires_grad=False) keeps its Winograd transforms, made once (see
    winograd.TransformedKernels.of).
    """
    kernels = TransformedKernels.of(W) if isinstance(W, Tensor) else None
    f = Conv2d(stride=stride, pad=pad, algorithm=algorithm, kernels=kernels)
    return f(x, W) if b is None else f(x, W, b)
