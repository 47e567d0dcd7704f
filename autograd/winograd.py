"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

Read conv.py first (notation N, C, H, W, O, OH, OW, pad (pt, pb, pl, pr)); docs/winograd.md has
the derivation. The output is cut into 2x2 tiles; tile (th, tw) needs the 4x4 patch d of the padded
input starting at row 2*th, column 2*tw. For one channel pair (o, c) with 3x3 kernel w = W[o, c],

    Y = A^T [ (K w K^T) * (B^T d B) ] A          (* elementwise on 4x4; Y is the 2x2 output tile)

with the constant matrices below (K transforms the kernel). Summed over c, the 4x4 elementwise
product becomes 16 matrix products, one per position (a, b) of the 4x4 grid, over all T tiles:

    U = K w K^T    kernel transform       W (O, C, 3, 3)   -> U (16, O, C), done once per kernel
    V = B^T d B    input transform        xpad             -> V (16, C, T)
    Z = U @ V      16 products            (16, O, C) @ (16, C, T) -> (16, O, T)
    Y = A^T Z A    output transform       Z                -> y (O, 2*TH, 2*TW)

Multiplications per 2x2 output tile and (o, c): 16 instead of 4 * 9 = 36, hence 2.25x fewer; the
transforms are additions only (B, A hold 0 and +-1) and cost O(C + O) per tile, not O(C * O).

Input gradient. For stride 1 the input gradient is itself a 3x3 convolution, of gy with the kernel
flipped and its channel axes swapped (derived in docs/convolution.md), so it runs through the same
code (``winograd_grad_input``), on the same U.

Memory. The work goes in bands of tile rows whose V and Z together hold at most ``chunk``
elements (default: backend.default_chunk), in buffers reused from band to band (``band_shapes``);
nothing grows with the image beyond x and y. The transforms are written with slicing only, so the
same code runs on NumPy and CuPy. conv2d runs F(2x2, 3x3) when asked for by name
(algorithm="winograd"): on a 2-core CPU, wherever it beat shifted views, F(4x4, 3x3)
(winograd4.py, which builds on this file) was faster still, so "auto" takes that instead.
"""
import numpy as np

from .backend import default_chunk, get_array_module

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])   # (4, 4) input
K = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])       # (4, 3) kernel
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])                                  # (2, 4) output

MIN_TILES = 256       # a band holds at least this many tiles (columns of Z), even past chunk


def supports(W_shape, stride, pad):
    """True when F(2x2, 3x3) applies: a 3x3 kernel, stride 1, each pad side 0, 1 or 2."""
    return tuple(W_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(pad) <= 2


def transform_kernel(W, dtype):
    """U = K w K^T for every (o, c): W (O, C, 3, 3) -> U (16, O, C), position a*4 + b first."""
    xp = get_array_module(W)
    O, C = W.shape[:2]
    k = xp.asarray(K, dtype=dtype)
    U = k @ W.astype(dtype, copy=False) @ k.T    # (4, 3) @ (O, C, 3, 3) @ (3, 4) -> (O, C, 4, 4)
    return xp.ascontiguousarray(U.transpose(2, 3, 0, 1)).reshape(16, O, C)  # -> (16, O, C)


def gradient_pad(pad, kernel=(3, 3)):
    """The padding of gy for the input gradient as a convolution: K-1-p on each side (2 - p for
    this file's 3x3 kernels), i.e. KH-1-pt, KH-1-pb, KW-1-pl, KW-1-pr (docs/convolution.md)."""
    KH, KW = kernel
    pt, pb, pl, pr = pad
    return (KH - 1 - pt, KH - 1 - pb, KW - 1 - pl, KW - 1 - pr)


def _bt(d0, d1, d2, d3, out):
    """out[k] = (B^T [d0, d1, d2, d3])[k]: the 1-D input transform, into 4 arrays."""
    xp = get_array_module(d0)
    xp.subtract(d0, d2, out=out[0])
    xp.add(d1, d2, out=out[1])
    xp.subtract(d2, d1, out=out[2])
    xp.subtract(d1, d3, out=out[3])


def _at(z0, z1, z2, z3, out0, out1):
    """(out0, out1) = A^T [z0, z1, z2, z3] = (z0 + z1 + z2, z1 - z2 - z3): 1-D output transform."""
    xp = get_array_module(z0)
    xp.add(z0, z1, out=out0)
    out0 += z2
    xp.subtract(z1, z2, out=out1)
    out1 -= z3


def fill_band(x, r0, pad, E):
    """Copy rows r0 .. r0+R-1 of the padded input into E, its columns split by parity.

    x (C, H, W) one image; E (2, C, R, TW + 1): E[p, c, r, j] = xpad[c, r0 + r, 2*j + p], zero
    where that falls in the padding. Splitting even and odd columns here, in the copy that padding
    needs anyway, makes every tap of the column transform a contiguous slice.
    """
    (C, H, Wd), (pt, _, pl, _), (R, J) = x.shape, pad, E.shape[2:]
    r_lo = min(R, max(0, pt - r0))                         # band rows r_lo .. r_hi-1 hold x's rows
    r_hi = max(r_lo, min(R, H + pt - r0))
    E[:, :, :r_lo] = 0
    E[:, :, r_hi:] = 0
    for p in range(2):
        j_lo = min(J, (pl - p + 1) // 2)                   # first j with 2j + p - pl >= 0
        j_hi = max(j_lo, min(J, (Wd - 1 + pl - p) // 2 + 1))
        E[p, :, :, :j_lo] = 0
        E[p, :, :, j_hi:] = 0
        w0 = 2 * j_lo + p - pl                             # x's column at j_lo
        E[p, :, r_lo:r_hi, j_lo:j_hi] = x[:, r0 + r_lo - pt:r0 + r_hi - pt,
                                          w0:w0 + 2 * (j_hi - j_lo) - 1:2]
    return E


def input_transform(E, t, cols, V):
    """V = B^T d B for the t x TW tiles of one band: E (2, C, 2t+2, TW+1) -> V (4, 4, C, t, TW).

    Tap k of tile column tw is padded column 2*tw + k: E[0][..., tw], E[1][..., tw],
    E[0][..., tw+1], E[1][..., tw+1]. First the columns (d B, into ``cols`` (4, C, 2t+2, TW)),
    then the rows (B^T (d B)): tap k of tile row th is row 2*th + k, the slice k : k + 2t : 2.
    """
    TW = cols.shape[-1]
    _bt(E[0][..., :TW], E[1][..., :TW], E[0][..., 1:], E[1][..., 1:], cols)  # each (C, 2t+2, TW)
    for b in range(4):
        _bt(*(cols[b][:, k:k + 2 * t:2] for k in range(4)), V[:, b])          # each (C, t, TW)


def output_transform(Z, half, tmp, y):
    """y = A^T Z A for the tiles of one band: Z (4, 4, O, t, TW) -> y (O, 2t, 2*TW).

    First along the rows (into ``half``, (2, 4, O, t, TW)), then the columns; each of the four
    results goes straight into the strided slice y[:, a::2, b::2] (O, t, TW) of its tile position.
    """
    xp = get_array_module(Z)
    _at(*Z, half[0], half[1])                                             # each (4, O, t, TW)
    for a in range(2):
        z0, z1, z2, z3 = half[a]                                          # each (O, t, TW)
        xp.add(z0, z1, out=tmp)
        xp.add(tmp, z2, out=y[:, a::2, 0::2])
        xp.subtract(z1, z2, out=tmp)
        xp.subtract(tmp, z3, out=y[:, a::2, 1::2])


def band_rows(C, O, TH, TW, chunk):
    """Tile rows per band: as many as keep V (16*C per tile) + Z (16*O per tile) within chunk,
    but at least enough for MIN_TILES tiles, below which the 16 products slow down."""
    within = chunk // (16 * (C + O) * TW)
    return max(1, min(TH, max(within, -(-MIN_TILES // TW))))


def band_shapes(C, O, OH, OW, chunk):
    """{name: shape} of the band buffers winograd_conv allocates (th = band_rows tile rows).

    E (2, C, 2th+2, TW+1) the padded rows split by column parity, cols (4, C, 2th+2, TW) the column
    transform, V (16*C*th*TW,) and Z (16*O*th*TW,) flat, half (2, 4, O, th, TW) and tmp
    (O, th, TW) the output transform's intermediates.
    """
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    th = band_rows(C, O, TH, TW, chunk)
    return dict(E=(2, C, 2 * th + 2, TW + 1), cols=(4, C, 2 * th + 2, TW),
                V=(16 * C * th * TW,), Z=(16 * O * th * TW,), half=(2, 4, O, th, TW),
                tmp=(O, th, TW))


def _elements(shapes):
    return {name: int(np.prod(shape)) for name, shape in shapes.items()}


def _output_elements(N, O, OH, OW):
    """(y, uncropped): y (N, O, OH, OW) and, when OH or OW is odd, the whole tiles' array."""
    uncropped = N * O * (OH + OH % 2) * (OW + OW % 2)
    return N * O * OH * OW, uncropped if OH % 2 or OW % 2 else 0


def winograd_conv_buffers(x_shape, O, pad, *, chunk):
    """{name: elements} of the arrays winograd_conv(x, U, pad) allocates, all alive at its peak.

    y (N, O, OH, OW), the result; uncropped, the whole tiles' y before the crop (0 for even OH
    and OW); and the band buffers of band_shapes.
    """
    (N, C, H, Wd), (pt, pb, pl, pr) = x_shape, pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    y, uncropped = _output_elements(N, O, OH, OW)
    return dict(y=y, uncropped=uncropped, **_elements(band_shapes(C, O, OH, OW, chunk)))


def winograd_grad_input_buffers(gy_shape, C, pad, *, chunk):
    """{name: elements} of the arrays winograd_grad_input(gy, U, pad) allocates, all alive at
    its peak: gx (N, C, H, W), the result; uncropped and the band buffers of the convolution of
    gy (O channels in, C out) that it runs (gy's flip is a view)."""
    (N, O, OH, OW), (gt, gb, gl, gr) = gy_shape, gradient_pad(pad)
    H, Wd = OH + gt + gb - 2, OW + gl + gr - 2
    gx, uncropped = _output_elements(N, C, H, Wd)
    return dict(gx=gx, uncropped=uncropped, **_elements(band_shapes(O, C, H, Wd, chunk)))


def winograd_conv(x, U, pad, b=None, *, chunk=None, out=None):
    """y = conv2d(x, W, b, pad=pad) for a 3x3 kernel, stride 1, from U = transform_kernel(W).

    x (N, C, H, W), U (16, O, C), b (O,) or None; returns y (N, O, OH, OW), OH = H + pt + pb - 2
    (and OW). The bias rides on Z[1, 1]: column 1 of A^T is (1, 1) (and row 1 of A, its
    transpose), so whatever is added to Z[1, 1] reaches all four outputs of a tile. Odd OH or OW:
    the last tile's extra output row (column) reads zeros and is cropped. ``out``: an optional
    (N, O, OH, OW) array (or view) to write y into.
    """
    xp = get_array_module(x, U)
    (N, C, H, Wd), O, (pt, pb, pl, pr) = x.shape, U.shape[1], pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    x = x.astype(U.dtype, copy=False)
    even = (OH, OW) == (2 * TH, 2 * TW)
    y = out if even and out is not None else xp.empty((N, O, 2 * TH, 2 * TW), dtype=U.dtype)
    chunk = chunk or default_chunk(xp)
    th, shapes = band_rows(C, O, TH, TW, chunk), band_shapes(C, O, OH, OW, chunk)
    E, cols, Vbuf, Zbuf, half, tmp = (xp.empty(shapes[name], dtype=U.dtype)
                                      for name in ("E", "cols", "V", "Z", "half", "tmp"))
    for n in range(N):
        for t0 in range(0, TH, th):
            t, R = min(th, TH - t0), 2 * min(th, TH - t0) + 2     # tile rows, padded input rows
            V = Vbuf[:16 * C * t * TW].reshape(16, C, t * TW)   # flat prefix -> (16, C, t*TW)
            Z = Zbuf[:16 * O * t * TW].reshape(16, O, t * TW)   # flat prefix -> (16, O, t*TW)
            band = fill_band(x[n], 2 * t0, pad, E[:, :, :R])
            input_transform(band, t, cols[:, :, :R],
                            V.reshape(4, 4, C, t, TW))        # (16, C, t*TW) -> (4, 4, C, t, TW)
            xp.matmul(U, V, out=Z)                  # (16, O, C) @ (16, C, t*TW) -> (16, O, t*TW)
            if b is not None:
                Z[5] += b.reshape(O, 1)                     # Z[1, 1] += b: (O,) -> (O, 1)
            output_transform(Z.reshape(4, 4, O, t, TW),       # (16, O, t*TW) -> (4, 4, O, t, TW)
                             half[:, :, :, :t], tmp[:, :t], y[n, :, 2 * t0:2 * (t0 + t)])
    if even:
        return y
    if out is None:
        return xp.ascontiguousarray(y[:, :, :OH, :OW])
    out[...] = y[:, :, :OH, :OW]
    return out


def winograd_grad_input(gy, U, pad, *, chunk=None):
    """gx = dL/dx of y = winograd_conv(x, U, pad), for gy (N, O, OH, OW); gx (N, C, H, W).

    gx is the correlation of gy, padded by gradient_pad(pad), with the flipped, channel-swapped
    kernel Wg[c, o, i, j] = W[o, c, 2 - i, 2 - j] (docs/convolution.md), whose transform
    would be a second (16, C, O) array. It need not exist: flipping the kernel equals
    flipping the data on both sides, corr(a, flip(k)) = flip(corr(flip(a), k)), and flips are free
    views (negative strides); for the unflipped W^T the transform is U transposed per position,
    U(W^T)[k] = U[k]^T, again a view. So gx = flip(corr(flip(gy), W^T)) runs on U itself.
    """
    return grad_input_by(winograd_conv, gy, U, pad, chunk=chunk)


def grad_input_by(conv, gy, U, pad, *, chunk=None):
    """gx = flip(conv(flip(gy), U^T)) for ``conv`` winograd_conv or winograd4.winograd4_conv:
    gy (N, O, OH, OW), U (P, O, C) -> gx (N, C, H, W), written through flipped views."""
    xp = get_array_module(gy, U)
    (N, O, OH, OW), C, (gt, gb, gl, gr) = gy.shape, U.shape[2], gradient_pad(pad)
    gx = xp.empty((N, C, OH + gt + gb - 2, OW + gl + gr - 2), dtype=xp.result_type(gy, U))
    conv(gy[:, :, ::-1, ::-1], U.transpose(0, 2, 1), (gb, gt, gr, gl),   # the flipped pad
         chunk=chunk, out=gx[:, :, ::-1, ::-1])      # (P, O, C) -> (P, C, O), a view
    return gx


class TransformedKernels:
    """U = K w K^T of one weight array (16, O, C), made once per dtype, on first use (the input
    gradient needs no second one: see winograd_grad_input); or another tile size's transform
    (winograd4.transform_kernel, (36, O, C)), kept beside it.

    Frozen weights never change, so whoever owns them keeps their transforms and passes them to
    each call, ``conv2d(x, W, kernels=...)``: VGG19 holds one per convolution (``net.kernels``),
    and a style-transfer run transforms each kernel once. ``W`` is the array they belong to:
    conv2d refuses them for any other (a replaced array needs new TransformedKernels; writing
    into the array in place would leave them stale).
    """

    def __init__(self, W):
        self.W = W                       # the weight array (O, C, 3, 3) the transforms belong to
        self._made = {}                  # (transform, dtype) -> U

    def transformed(self, dtype, transform=None):
        """U of W in ``dtype`` by ``transform`` (default: this file's, (16, O, C))."""
        transform = transform or transform_kernel
        key = (transform, np.dtype(dtype))
        if key not in self._made:
            self._made[key] = transform(self.W, dtype)
        return self._made[key]
