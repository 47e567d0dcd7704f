"""Winograd F(4x4, 3x3): 6x6 tiles, 4x fewer multiplications, the transforms as matrix products.

Read winograd.py first: this is the same algorithm with larger tiles. A 4x4 output tile needs the
6x6 patch d of the padded input starting at row 4*th, column 4*tw, and for one channel pair

    Y = A^T [ (G w G^T) * (B^T d B) ] A          (Y 4x4, the products 6x6)

with the matrices below, built by Toom-Cook interpolation from the points 0, 3/2, -3/2, 2/3, -2/3
and infinity (docs/winograd.md). 36 multiplications per tile and (o, c) for 16 outputs of 9
taps: 4x fewer than the 144 of the direct sum, against 2.25x for F(2x2, 3x3).

The 2-D transforms are written as one matrix product each. B^T d B, entry (a, b), is
sum_{i, j} B^T[a, i] B^T[b, j] d[i, j]: with the 36 taps d[i, j] of every tile stacked as rows,
that is the Kronecker product BB = B^T (x) B^T (36, 36) times them; likewise A^T Z A is
AA = A^T (x) A^T (16, 36) times the 36 products. So per band of tile rows:

    d      36 strided copies    padded band          -> d (36, C, T)   d[6i+j] = taps (i, j)
    V      BB @ d               (36, 36) @ (36, C*T) -> V (36, C, T)
    Z      U @ V                (36, O, C) @ (36, C, T) -> Z (36, O, T), U = transform_kernel(W)
    Y      AA @ Z               (16, 36) @ (36, O*T) -> Y (16, O, T), then into y[:, a::4, b::4]

B and A hold entries up to 97, not just +-1 as in F(2x2, 3x3): the float32 rounding of V and Z
is amplified on the way back. Lavin & Gray's points 0, +-1, +-2 amplify it more: on VGG-19's
layers their float32 error is 1.3-2.2x that of these points, whose own is 1.2-2.9x
F(2x2, 3x3)'s (docs/winograd.md). Each column of A^T is a point's powers, scaled to
integers (3/2: 8 * (1, 3/2, 9/4, 27/8)), each row of B^T is scaled to integers too, and G takes
the inverse scales: B and A are exact in float32, G is rounded once, in transform_kernel.
conv_fast.py takes this file where C and O are both 128 or more (VGG's conv2_2 to conv5_4).

The input gradient is a convolution of the flipped gy with U transposed per position, as in
winograd.py (``winograd4_grad_input``). Memory: the work goes in bands of tile rows in two
reused buffers (d, then Z; V, then Y) of at most about ``chunk`` elements, and one padded band.
"""
import numpy as np

from .backend import default_chunk, get_array_module
from .im2col import pad_rows
from .winograd import MIN_TILES, gradient_pad, grad_input_by

POINTS = (0, 3 / 2, -3 / 2, 2 / 3, -2 / 3)    # and infinity: the columns of A^T, in this order
BT = np.array([[36, 0, -97, 0, 36, 0], [0, -12, -8, 27, 18, 0], [0, 12, -8, -27, 18, 0],
               [0, -18, -27, 8, 12, 0], [0, 18, -27, -8, 12, 0], [0, 36, 0, -97, 0, 36]])  # input
G = np.array([[1 / 36, 0, 0], [1 / 1170, 1 / 780, 1 / 520], [1 / 1170, -1 / 780, 1 / 520],
              [-1 / 520, -1 / 780, -1 / 1170], [-1 / 520, 1 / 780, -1 / 1170], [0, 0, 1 / 36]])
AT = np.array([[1, 8, 8, 27, 27, 0], [0, 12, -12, 18, -18, 0], [0, 18, 18, 12, 12, 0],
               [0, 27, -27, 8, -8, 1]])                                            # (4, 6) output
BB = np.kron(BT, BT)        # (36, 36): V[6a+b] = sum_ij BT[a, i] BT[b, j] d[6i+j]
AA = np.kron(AT, AT)        # (16, 36): Y[4a+b] = sum_ij AT[a, i] AT[b, j] Z[6i+j]


def transform_kernel(W, dtype, *, block=64):
    """U = G w G^T for every (o, c): W (O, C, 3, 3) -> U (36, O, C), position a*6 + b first.

    Computed in float64 (G's 1/6 and 1/24 rounded once, in the final cast), ``block`` output
    channels at a time: a whole float64 (O, C, 6, 6) would be 4x U's float32 size, twice over.
    """
    xp = get_array_module(W)
    O, C = W.shape[:2]
    g = xp.asarray(G, dtype=np.float64)
    U = xp.empty((36, O, C), dtype=dtype)
    for o0 in range(0, O, block):
        w = W[o0:o0 + block].astype(np.float64)
        u = g @ w @ g.T                            # (6, 3) @ (o, C, 3, 3) @ (3, 6) -> (o, C, 6, 6)
        U[:, o0:o0 + block] = u.transpose(2, 3, 0, 1).reshape(36, -1, C)   # -> (36, o, C)
    return U


def band_rows(C, O, TH, TW, chunk):
    """Tile rows per band: the two buffers (36 * max(C, O) per tile each) within chunk, but at
    least MIN_TILES tiles."""
    within = chunk // (2 * 36 * max(C, O) * TW)
    return max(1, min(TH, max(within, -(-MIN_TILES // TW))))


def band_shapes(C, O, OH, OW, chunk):
    """{name: shape} of the buffers winograd4_conv allocates (th = band_rows tile rows).

    band (C*(4th+2)*(4TW+2),) the padded input rows of one band, flat (im2col.pad_rows);
    taps (36*max(C, O)*th*TW,) holds d, then Z; sums (the same) holds V, then Y.
    """
    TH, TW = -(-OH // 4), -(-OW // 4)
    th = band_rows(C, O, TH, TW, chunk)
    work = 36 * max(C, O) * th * TW
    return dict(band=(C * (4 * th + 2) * (4 * TW + 2),), taps=(work,), sums=(work,))


def winograd4_conv_buffers(x_shape, O, pad, *, chunk):
    """{name: elements} of the arrays winograd4_conv(x, U, pad) allocates, all alive at its peak:
    y (N, O, OH, OW), the result, and the buffers of band_shapes."""
    (N, C, H, Wd), (pt, pb, pl, pr) = x_shape, pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    shapes = band_shapes(C, O, OH, OW, chunk)
    return dict(y=N * O * OH * OW, **{name: int(np.prod(s)) for name, s in shapes.items()})


def winograd4_grad_input_buffers(gy_shape, C, pad, *, chunk):
    """{name: elements} of winograd4_grad_input(gy, U, pad): gx (N, C, H, W), the result, and
    the buffers of the convolution of gy (O channels in, C out) that it runs."""
    (N, O, OH, OW), (gt, gb, gl, gr) = gy_shape, gradient_pad(pad)
    forward = winograd4_conv_buffers((N, O, OH, OW), C, (gt, gb, gl, gr), chunk=chunk)
    return dict(gx=forward.pop("y"), **forward)


def winograd4_conv(x, U, pad, b=None, *, chunk=None, out=None):
    """y = conv2d(x, W, b, pad=pad) for a 3x3 kernel, stride 1, from U = transform_kernel(W).

    x (N, C, H, W), U (36, O, C), b (O,) or None; returns y (N, O, OH, OW), OH = H + pt + pb - 2
    (and OW), or writes it into ``out``. Output sizes that are not multiples of 4: the last
    tiles read extra zero rows (columns) and their extra outputs are not written. The bias is
    added to Y (no column of A^T is all ones, as F(2x2, 3x3)'s is, to carry it through Z).
    """
    xp = get_array_module(x, U)
    (N, C, H, Wd), O, (pt, pb, pl, pr) = x.shape, U.shape[1], pad
    OH, OW = H + pt + pb - 2, Wd + pl + pr - 2
    TH, TW = -(-OH // 4), -(-OW // 4)
    whole = (pt, pb + 4 * TH - OH, pl, pr + 4 * TW - OW)     # padded to whole tiles
    y = xp.empty((N, O, OH, OW), dtype=U.dtype) if out is None else out
    chunk = chunk or default_chunk(xp)
    th, shapes = band_rows(C, O, TH, TW, chunk), band_shapes(C, O, OH, OW, chunk)
    band, taps, sums = (xp.empty(shapes[name], dtype=U.dtype) for name in ("band", "taps", "sums"))
    BBx, AAx = xp.asarray(BB, dtype=U.dtype), xp.asarray(AA, dtype=U.dtype)
    x = x.astype(U.dtype, copy=False)
    for n in range(N):
        for t0 in range(0, TH, th):
            t = min(th, TH - t0)
            T = t * TW
            rows = pad_rows(x[n:n + 1], slice(4 * t0, 4 * (t0 + t) + 2), whole, out=band)[0]
            d = taps[:36 * C * T].reshape(6, 6, C, t, TW)
            for i in range(6):
                for j in range(6):
                    d[i, j] = rows[:, i:i + 4 * t:4, j:j + 4 * TW:4]     # (C, t, TW) taps (i, j)
            V = sums[:36 * C * T].reshape(36, C, T)
            xp.matmul(BBx, d.reshape(36, C * T), out=V.reshape(36, C * T))
            Z = taps[:36 * O * T].reshape(36, O, T)       # d is used up: Z takes its buffer
            xp.matmul(U, V, out=Z)                        # (36, O, C) @ (36, C, T) -> (36, O, T)
            Y = sums[:16 * O * T].reshape(4, 4, O, t, TW)  # V is used up: Y takes its buffer
            xp.matmul(AAx, Z.reshape(36, O * T), out=Y.reshape(16, O * T))
            if b is not None:
                Y += b.reshape(O, 1, 1)                   # (O,) -> (O, 1, 1), every output
            scatter(Y, y[n], 4 * t0)
    return y


def scatter(Y, y, r0):
    """Write the band's outputs Y (4, 4, O, t, TW) into y (O, OH, OW) from row r0: Y[a, b] are
    the rows r0 + a, r0 + a + 4, ... and columns b, b + 4, ...; those past OH or OW are dropped."""
    OH, OW = y.shape[1:]
    t = Y.shape[3]
    for a in range(4):
        rows = len(range(r0 + a, min(OH, r0 + 4 * t), 4))
        for b in range(4):
            cols = len(range(b, OW, 4))
            y[:, r0 + a:r0 + a + 4 * rows:4, b:b + 4 * cols:4] = Y[a, b, :, :rows, :cols]


def winograd4_grad_input(gy, U, pad, *, chunk=None):
    """gx = dL/dx of y = winograd4_conv(x, U, pad), for gy (N, O, OH, OW); gx (N, C, H, W).

    As winograd.winograd_grad_input: gx = flip(corr(flip(gy), W^T)), and U(W^T)[k] = U[k]^T, a
    view, so the same U serves the forward and the input gradient.
    """
    return grad_input_by(winograd4_conv, gy, U, pad, chunk=chunk)
