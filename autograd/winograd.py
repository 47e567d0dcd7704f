"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

Read conv.py first (notation N, C, H, W, O, OH, OW, pad (pt, pb, pl, pr)); docs/winograd.md has
the derivation. The output is cut into 2x2 tiles; tile (th, tw) needs the 4x4 patch d of the padded
input starting at row 2*th, column 2*tw. For one channel pair (o, c) with 3x3 kernel w = W[o, c],

    Y = A^T [ (K w K^T) * (B^T d B) ] A          (* elementwise on 4x4; Y is the 2x2 output tile)

with the constant matrices below (K transforms the kernel). Summed over c, the 4x4 elementwise
product becomes 16 matrix products, one per position (a, b) of the 4x4 grid, over all T tiles:

    U = K w K^T    kernel transform       W (O, C, 3, 3)   -> U (16, O, C), done once per kernel
    V = B^T d B    input transform        d (16, C, T)     -> V (16, C, T)
    Z = U @ V      16 products            (16, O, C) @ (16, C, T) -> (16, O, T)
    Y = A^T Z A    output transform       Z                -> Y (4, O, T), into y[:, a::2, b::2]

Multiplications per 2x2 output tile and (o, c): 16 instead of 4 * 9 = 36, hence 2.25x fewer; the
transforms cost O(C + O) per tile, not O(C * O). Each 2-D transform is one matrix product:
(B^T d B)[a, b] = sum_{i, j} B^T[a, i] B^T[b, j] d[i, j], so with the 16 taps d[i, j] of every
tile stacked as rows (16 strided copies of the padded input), V = BB @ d with the Kronecker
product BB = B^T (x) B^T (16, 16); likewise Y = AA @ Z, AA = A^T (x) A^T (4, 16).

The same code runs any F(m x m, 3x3) given its matrices (``Tiling``): winograd4.py gives
F(4x4, 3x3)'s, with 6x6 tiles. ``tiling`` defaults to this file's F2.

Input gradient. For stride 1 the input gradient is itself a 3x3 convolution, of gy with the kernel
flipped and its channel axes swapped (derived in docs/convolution.md), so it runs through the same
code (``winograd_grad_input``), on the same U.

Memory. The work goes in bands of tile rows, in two buffers of at most about ``chunk`` elements
(default: backend.default_chunk) and one padded band of input rows, reused from band to band
(``band_shapes``); nothing grows with the image beyond x and y. Slicing and matrix products only,
so the same code runs on NumPy and CuPy. conv_fast.py decides where this file's code runs.
"""
import numpy as np

from .backend import default_chunk, get_array_module
from .im2col import pad_rows

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])   # (4, 4) input
K = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])       # (4, 3) kernel
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])                                  # (2, 4) output

MIN_TILES = 256       # a band holds at least this many tiles (columns of Z), even past chunk


class Tiling:
    """F(m x m, 3x3) by its matrices: BT (a, a), kernel (a, 3), AT (m, a), tiles of a = m + 2.

    P = a*a positions; BB = BT (x) BT (P, P) and AA = AT (x) AT (m*m, P), the 2-D transforms of
    row-major flattened tiles. ``bias_at`` = a + 1, position (1, 1): column 1 of AT is all ones (the
    point 1), so a bias added to Z there reaches every output of the tile.
    """

    def __init__(self, BT, kernel, AT):
        self.BT, self.kernel, self.AT = (np.asarray(M, dtype=np.float64) for M in (BT, kernel, AT))
        self.m, self.a = self.AT.shape
        self.P = self.a * self.a
        self.BB, self.AA = np.kron(self.BT, self.BT), np.kron(self.AT, self.AT)
        assert (self.AT[:, 1] == 1).all(), "the bias rides on position (1, 1)"
        self.bias_at = self.a + 1


F2 = Tiling(BT, K, AT)


def supports(W_shape, stride, pad):
    """True when F(2x2, 3x3) applies: a 3x3 kernel, stride 1, each pad side 0, 1 or 2."""
    return tuple(W_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(pad) <= 2


def transform_kernel(W, dtype, tiling=F2, *, block=64):
    """U = K w K^T for every (o, c): W (O, C, 3, 3) -> U (P, O, C), position a*4 + b first
    (a*6 + b for F(4x4, 3x3), whose tiling.kernel is G).

    Computed in float64 (F(4x4, 3x3)'s 1/6 and 1/24 rounded once, in the final cast), ``block``
    output channels at a time, so the float64 intermediates stay small beside U.
    """
    xp = get_array_module(W)
    O, C = W.shape[:2]
    k = xp.asarray(tiling.kernel)
    U = xp.empty((tiling.P, O, C), dtype=dtype)
    for o0 in range(0, O, block):
        u = k @ W[o0:o0 + block].astype(np.float64) @ k.T   # (a, 3) @ (o, C, 3, 3) @ (3, a)
        U[:, o0:o0 + block] = u.transpose(2, 3, 0, 1).reshape(tiling.P, -1, C)  # -> (P, o, C)
    return U


def gradient_pad(pad, kernel=(3, 3)):
    """The padding of gy for the input gradient as a convolution: K-1-p on each side (2 - p for
    this file's 3x3 kernels), i.e. KH-1-pt, KH-1-pb, KW-1-pl, KW-1-pr (docs/convolution.md)."""
    KH, KW = kernel
    pt, pb, pl, pr = pad
    return (KH - 1 - pt, KH - 1 - pb, KW - 1 - pl, KW - 1 - pr)


def band_rows(C, O, TH, TW, chunk, P=16):
    """Tile rows per band: as many as keep each of the two work buffers (P * max(C, O) per tile)
    within chunk / 2, but at least enough for MIN_TILES tiles, below which the products slow."""
    within = chunk // (2 * P * max(C, O) * TW)
    return max(1, min(TH, max(within, -(-MIN_TILES // TW))))


def band_shapes(C, O, OH, OW, chunk, tiling=F2):
    """{name: shape} of the buffers winograd_conv allocates (th = band_rows tile rows).

    band (C*(m*th+2)*(m*TW+2),), the padded input rows of one band, flat (im2col.pad_rows);
    taps (P*max(C, O)*th*TW,) holds the taps d, then Z; sums (the same) holds V, then Y.
    """
    m, P = tiling.m, tiling.P
    TH, TW = -(-OH // m), -(-OW // m)
    th = band_rows(C, O, TH, TW, chunk, P)
    work = P * max(C, O) * th * TW
    return dict(band=(C * (m * th + 2) * (m * TW + 2),), taps=(work,), sums=(work,))


def winograd_conv_buffers(x_shape, O, pad, *, chunk, tiling=F2):
    """{name: elements} of the arrays winograd_conv(x, U, pad) allocates, all alive at its peak:
    y (N, O, OH, OW), the result, and the buffers of band_shapes."""
    (N, C, H, Wd), (pt, pb, pl, pr) = x_shape, pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    shapes = band_shapes(C, O, OH, OW, chunk, tiling)
    return dict(y=N * O * OH * OW, **{name: int(np.prod(s)) for name, s in shapes.items()})


def winograd_grad_input_buffers(gy_shape, C, pad, *, chunk, tiling=F2):
    """{name: elements} of winograd_grad_input(gy, U, pad): gx (N, C, H, W), the result, and
    the buffers of the convolution of gy (O channels in, C out) that it runs (gy's flip is a
    view)."""
    forward = winograd_conv_buffers(gy_shape, C, gradient_pad(pad), chunk=chunk, tiling=tiling)
    return dict(gx=forward.pop("y"), **forward)


def winograd_conv(x, U, pad, b=None, *, tiling=F2, chunk=None, out=None):
    """y = conv2d(x, W, b, pad=pad) for a 3x3 kernel, stride 1, from U = transform_kernel(W).

    x (N, C, H, W), U (P, O, C), b (O,) or None; returns y (N, O, OH, OW), OH = H + pt + pb - 2
    (and OW), or writes it into ``out``, an (N, O, OH, OW) array or view. Output sizes that are
    not multiples of m: the last tiles read extra zero rows (columns) and their extra outputs
    are not written. The bias rides on Z[tiling.bias_at].
    """
    xp = get_array_module(x, U)
    m, a, P = tiling.m, tiling.a, tiling.P
    (N, C, H, Wd), O, (pt, pb, pl, pr) = x.shape, U.shape[1], pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    TH, TW = -(-OH // m), -(-OW // m)
    whole = (pt, pb + m * TH - OH, pl, pr + m * TW - OW)     # padded to whole tiles
    y = xp.empty((N, O, OH, OW), dtype=U.dtype) if out is None else out
    chunk = chunk or default_chunk(xp)
    th, shapes = band_rows(C, O, TH, TW, chunk, P), band_shapes(C, O, OH, OW, chunk, tiling)
    band, taps, sums = (xp.empty(shapes[name], dtype=U.dtype) for name in ("band", "taps", "sums"))
    BB, AA = xp.asarray(tiling.BB, dtype=U.dtype), xp.asarray(tiling.AA, dtype=U.dtype)
    x = x.astype(U.dtype, copy=False)
    for n in range(N):
        for t0 in range(0, TH, th):
            t = min(th, TH - t0)
            T = t * TW
            rows = pad_rows(x[n:n + 1], slice(m * t0, m * (t0 + t) + 2), whole, out=band)[0]
            d = taps[:P * C * T].reshape(a, a, C, t, TW)
            for i in range(a):
                for j in range(a):
                    d[i, j] = rows[:, i:i + m * t:m, j:j + m * TW:m]    # (C, t, TW): tap (i, j)
            V = sums[:P * C * T].reshape(P, C, T)
            xp.matmul(BB, d.reshape(P, C * T), out=V.reshape(P, C * T))   # V = B^T d B
            Z = taps[:P * O * T].reshape(P, O, T)         # d is used up: Z takes its buffer
            xp.matmul(U, V, out=Z)                        # (P, O, C) @ (P, C, T) -> (P, O, T)
            if b is not None:
                Z[tiling.bias_at] += b.reshape(O, 1)      # Z[1, 1] += b: (O,) -> (O, 1)
            Y = sums[:m * m * O * T].reshape(m, m, O, t, TW)   # V is used up: Y takes its buffer
            xp.matmul(AA, Z.reshape(P, O * T), out=Y.reshape(m * m, O * T))   # Y = A^T Z A
            scatter(Y, y[n], m * t0)
    return y


def scatter(Y, y, r0):
    """Write a band's outputs Y (m, m, O, t, TW) into y (O, OH, OW) from row r0: Y[i, j] holds
    rows r0 + i, r0 + i + m, ... and columns j, j + m, ...; those past OH or OW are dropped."""
    m, t = Y.shape[0], Y.shape[3]
    OH, OW = y.shape[1:]
    for i in range(m):
        rows = len(range(r0 + i, min(OH, r0 + m * t), m))
        for j in range(m):
            cols = len(range(j, OW, m))
            y[:, r0 + i:r0 + i + m * rows:m, j:j + m * cols:m] = Y[i, j, :, :rows, :cols]


def winograd_grad_input(gy, U, pad, *, tiling=F2, chunk=None):
    """gx = dL/dx of y = winograd_conv(x, U, pad), for gy (N, O, OH, OW); gx (N, C, H, W).

    gx is the correlation of gy, padded by gradient_pad(pad), with the flipped, channel-swapped
    kernel Wg[c, o, i, j] = W[o, c, 2 - i, 2 - j] (docs/convolution.md), whose transform
    would be a second (P, C, O) array. It need not exist: flipping the kernel equals
    flipping the data on both sides, corr(a, flip(k)) = flip(corr(flip(a), k)), and flips are free
    views (negative strides); for the unflipped W^T the transform is U transposed per position,
    U(W^T)[k] = U[k]^T, again a view. So gx = flip(corr(flip(gy), W^T)) runs on U itself.
    """
    xp = get_array_module(gy, U)
    (N, O, OH, OW), C, (gt, gb, gl, gr) = gy.shape, U.shape[2], gradient_pad(pad)
    gx = xp.empty((N, C, OH + gt + gb - 2, OW + gl + gr - 2), dtype=xp.result_type(gy, U))
    winograd_conv(gy[:, :, ::-1, ::-1], U.transpose(0, 2, 1), (gb, gt, gr, gl),  # flipped pad
                  tiling=tiling, chunk=chunk, out=gx[:, :, ::-1, ::-1])  # (P, C, O), a view
    return gx


class TransformedKernels:
    """U = K w K^T of one weight array (P, O, C), made once per tiling and dtype, on first use (the
    input gradient needs no second one: see winograd_grad_input).

    Frozen weights never change, so whoever owns them keeps their transforms and passes them to
    each call, ``conv2d(x, W, kernels=...)``: VGG19 holds one per convolution (``net.kernels``),
    and a style-transfer run transforms each kernel once. ``W`` is the array they belong to:
    conv2d refuses them for any other (a replaced array needs new TransformedKernels; writing
    into the array in place would leave them stale).
    """

    def __init__(self, W):
        self.W = W                       # the weight array (O, C, 3, 3) the transforms belong to
        self._made = {}                  # (tiling, dtype) -> U

    def transformed(self, dtype, tiling=F2):
        """U of W in ``dtype`` for ``tiling``, (P, O, C)."""
        key = (tiling, np.dtype(dtype))
        if key not in self._made:
            self._made[key] = transform_kernel(self.W, dtype, tiling)
        return self._made[key]
