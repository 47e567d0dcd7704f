"""Convolution as a matrix product (im2col), and its backward passes: the reference.

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

Backward, with gy = dL/dy (derivations on the functions below and in docs/convolution.md):
    input:   gcol[n] = Wm^T @ gy[n], then gx = col2im(gcol) without the padding
    weight:  gWm = sum_n gy[n] @ col[n]^T          (skipped when W is frozen)
    bias:    gb[o] = sum over n, oh, ow of gy[n, o, oh, ow]

Memory. col has KH*KW/(sh*sw) times as many entries as x (C*KH*KW*OH*OW against C*H*W): 9 for a
3x3 stride-1 layer, ~600 MB for VGG-19's conv1_2 at 512 px. So the work goes in chunks (groups
of images, or bands of output rows of one image) whose col has at most ``chunk`` elements, in
one reused buffer (default: backend.default_chunk). On the CPU a chunk of 16 MB (float32)
mostly stays in the shared cache between im2col writing it and the matrix product reading it,
and keeps the products few: each one wakes the BLAS library's threads, which costs dearly when
other programs share the cores (many small products ran up to 10x slower on a busy 2-core
machine). On the GPU larger chunks (128 MB) keep the device busy with few, large products.
The zero padding, too, is built chunk by chunk (im2col.pad_rows): only the input rows a chunk
reads are copied, padded, into a small reused buffer, never the whole padded x.
col is never kept for backward: Conv2d keeps W for the input gradient and x for the weight
gradient, and recomputes col when the weight gradient is asked for. Each op's ``*_buffers``
function gives the sizes of the arrays it allocates, and the op sizes its buffers with it.

This file is the reference, complete on its own (``conv2d_im2col``). The ``conv2d`` that users
call is conv_fast.py's, read after winograd.py: it chooses per layer between this and Winograd,
and for stride 1 computes the input gradient as a convolution of gy rather than by col2im.
"""
from .backend import default_chunk, get_array_module
from .im2col import as_pad, as_pair, col2im, im2col, output_size, pad_rows, unpad
from .tensor import Function


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
    The first chunk is the largest.
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


# -- what each op allocates ------------------------------------------------------------------------
def _geometry(x_shape, W_shape, stride, pad):
    """(N, C, Hp, Wp, O, CKK, OH, OW) of a convolution, its arguments parsed and checked."""
    stride, pad = as_pair(stride, op="conv2d", name="stride"), as_pad(pad, op="conv2d")
    OH, OW = conv2d_shapes(x_shape, W_shape, None, stride, pad)
    (N, C, H, Wd), (O, _, KH, KW), (pt, pb, pl, pr) = x_shape, W_shape, pad
    return N, C, H + pt + pb, Wd + pl + pr, O, C * KH * KW, OH, OW


def col_elements(N, OH, row_elements, chunk):
    """Elements of the one reused col buffer: the first (largest) chunk of ``chunks``."""
    images, rows = next(chunks(N, OH, row_elements, chunk))
    return (images.stop - images.start) * (rows.stop - rows.start) * row_elements


def band_elements(x_shape, W_shape, stride, pad, *, chunk):
    """Elements of the reused band buffer: the padded input rows of the first (largest) chunk,
    (n, C, R, Wp) (im2col.pad_rows); 0 without padding, where the band is a view of x."""
    N, C, Hp, Wp, O, CKK, OH, OW = _geometry(x_shape, W_shape, stride, pad)
    if not any(as_pad(pad, op="conv2d")):
        return 0
    images, rows = next(chunks(N, OH, CKK * OW, chunk))
    R = input_rows(rows, W_shape[2], as_pair(stride, op="conv2d", name="stride")[0])
    return (images.stop - images.start) * C * (R.stop - R.start) * Wp


def conv2d_forward_buffers(x_shape, W_shape, stride, pad, *, chunk):
    """{name: elements} of the arrays conv2d_forward allocates, all alive at its peak.

    y (N, O, OH, OW), the result; band, the padded input rows of one chunk (band_elements; 0
    when pad is 0); col, the reused col buffer. In the dtype of x and W (a cast copy of x if they
    differ: not counted). No padded copy of the whole x is made.
    """
    N, C, Hp, Wp, O, CKK, OH, OW = _geometry(x_shape, W_shape, stride, pad)
    return dict(y=N * O * OH * OW, band=band_elements(x_shape, W_shape, stride, pad, chunk=chunk),
                col=col_elements(N, OH, CKK * OW, chunk))


def conv2d_grad_input_buffers(x_shape, W_shape, stride, pad, *, chunk):
    """{name: elements} of the arrays conv2d_grad_input allocates, all alive at its peak.

    gxpad (N, C, Hp, Wp), of which the result gx is a view (no more); gcol, the reused buffer.
    """
    N, C, Hp, Wp, O, CKK, OH, OW = _geometry(x_shape, W_shape, stride, pad)
    return dict(gxpad=N * C * Hp * Wp, gcol=col_elements(N, OH, CKK * OW, chunk))


def conv2d_grad_weight_buffers(x_shape, W_shape, stride, pad, *, chunk):
    """{name: elements} of the arrays conv2d_grad_weight allocates, all alive at its peak.

    gW (O, CKK), the result; band and col as in the forward; product (O, CKK), one image's
    gy[n] @ col[n]^T before it is added to gW.
    """
    N, C, Hp, Wp, O, CKK, OH, OW = _geometry(x_shape, W_shape, stride, pad)
    forward = conv2d_forward_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    return dict(gW=O * CKK, band=forward["band"], col=forward["col"], product=O * CKK)


# -- the ops ---------------------------------------------------------------------------------------
def _cols(x, KH, KW, stride, pad, OH, OW, chunk, buffers):
    """Yield (images, rows, colm): each chunk's col as matrices (n, CKK, r*OW).

    Per chunk, the padded input rows it reads are built in buffers["band"] (pad_rows), then
    im2col copies their windows into buffers["col"]: both stay small, and no padded copy of the
    whole x is made.
    """
    N, CKK = x.shape[0], x.shape[1] * KH * KW
    for images, rows in chunks(N, OH, CKK * OW, chunk):
        band = pad_rows(x[images], input_rows(rows, KH, stride[0]), pad, out=buffers["band"])
        col = im2col(band, KH, KW, stride=stride, out=buffers["col"])  # (n, C, KH, KW, r, OW)
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
    chunk = chunk or default_chunk(xp)
    sizes = conv2d_forward_buffers(x.shape, W.shape, stride, pad, chunk=chunk)
    N, (O, C, KH, KW) = x.shape[0], W.shape
    Wm = W.astype(dtype, copy=False).reshape(O, C * KH * KW)   # (O, C, KH, KW) -> (O, CKK)
    y = xp.empty((N, O, OH, OW), dtype=dtype)
    buffers = {name: xp.empty(sizes[name], dtype=dtype) for name in ("band", "col")}
    bias = None if b is None else b.reshape(O, 1)                     # (O,) -> (O, 1)
    for images, rows, colm in _cols(x.astype(dtype, copy=False), KH, KW, stride, pad, OH, OW,
                                    chunk, buffers):
        n, r = colm.shape[0], rows.stop - rows.start
        ym = y[images, :, rows].reshape(n, O, r * OW)   # a view: (n, O, r, OW) -> (n, O, r*OW)
        xp.matmul(Wm, colm, out=ym)                 # (O, CKK) @ (n, CKK, r*OW) -> (n, O, r*OW)
        if bias is not None:
            ym += bias                              # while this chunk of y is still in cache
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
    chunk = chunk or default_chunk(xp)
    sizes = conv2d_grad_input_buffers(x_shape, W.shape, stride, pad, chunk=chunk)
    (N, C, H, Wd), (O, _, KH, KW), (pt, pb, pl, pr) = x_shape, W.shape, pad
    CKK = C * KH * KW
    gxpad = xp.zeros((N, C, H + pt + pb, Wd + pl + pr), dtype=xp.result_type(gy, W))
    WmT = W.reshape(O, CKK).T                                  # (O, C, KH, KW) -> (CKK, O)
    buf = xp.empty(sizes["gcol"], dtype=gxpad.dtype)
    for images, rows in chunks(N, OH, CKK * OW, chunk):
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
    chunk = chunk or default_chunk(xp)
    sizes = conv2d_grad_weight_buffers(x.shape, W_shape, stride, pad, chunk=chunk)
    O, C, KH, KW = W_shape
    gWm = xp.zeros((O, C * KH * KW), dtype=dtype)
    buffers = {name: xp.empty(sizes[name], dtype=dtype) for name in ("band", "col")}
    for images, rows, colm in _cols(x.astype(dtype, copy=False), KH, KW, stride, pad, OH, OW,
                                    chunk, buffers):
        n, r = colm.shape[0], rows.stop - rows.start
        gym = gy[images, :, rows].reshape(n, O, r * OW)  # (n, O, r, OW) -> (n, O, r*OW)
        for k in range(n):
            gWm += gym[k] @ colm[k].T               # (O, r*OW) @ (r*OW, CKK) -> (O, CKK)
    return gWm.reshape(W_shape)                                # (O, CKK) -> (O, C, KH, KW)


def conv2d_grad_bias(gy):
    """gb = dL/db: y[n, o, oh, ow] = b[o] + ..., so gb[o] = sum_{n, oh, ow} gy[n, o, oh, ow]."""
    return gy.sum(axis=(0, 2, 3))


class Conv2d(Function):
    """y = conv2d_im2col(x, W[, b]): the reference op. Inputs (x, W) or (x, W, b).

    Kept for backward: W when x needs a gradient, x when W does (``keep_for_backward``); never
    the im2col matrix. Each gradient is computed only when its input needs it: a frozen W costs
    no weight-gradient work. conv_fast.FastConv2d replaces ``forward`` and ``grad_input``.
    """

    def __init__(self, *, stride=1, pad=0):
        self.stride = as_pair(stride, op="conv2d", name="stride")
        self.pad = as_pad(pad, op="conv2d")

    def forward(self, x, W, b=None):
        y = conv2d_forward(x, W, b, self.stride, self.pad)
        self.keep_for_backward(x, W)
        return y

    def keep_for_backward(self, x, W):
        """Keep the shapes, W if x needs a gradient (for gx), x if W needs one (for gW)."""
        if self.recording:
            self.x_shape, self.W_shape = x.shape, W.shape
            self.W = W if self.needs_grad[0] else None
            self.x = x if self.needs_grad[1] else None

    def grad_input(self, gy):
        """gx by col2im (conv2d_grad_input)."""
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


def conv2d_im2col(x, W, b=None, *, stride=1, pad=0):
    """conv2d by the reference path only: im2col forward, col2im input gradient.

    x (N, C, H, W), W (O, C, KH, KW), b (O,) -> (N, O, OH, OW); ``stride`` and ``pad`` as in
    conv_fast.conv2d, which users call (it gives the same results, faster).
    """
    f = Conv2d(stride=stride, pad=pad)
    return f(x, W) if b is None else f(x, W, b)
