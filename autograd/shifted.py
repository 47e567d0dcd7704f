"""A stride-1 convolution as KW matrix products over shifted views: im2col of the kernel rows only.

Read conv.py first (its notation). im2col copies every input pixel KH*KW times into col, and
BLAS then reads col once more to pack it. Here only the KH row offsets of the kernel are copied;
its KW column offsets are views of those copies.

A band of R output rows oh0 .. oh0+R-1 reads the padded input rows oh0 .. oh0+R+KH-2. Laid out
flat, row after row, padded pixel (r, w) of R rows sits at r*Wp + w (Wp = W + pl + pr, the
padded width), so a view that starts j elements later sees every row's pixels j columns to the
right. Stack, for each kernel row i, the R padded rows starting at oh0 + i (``fill_stack``):

    S[i*C + c, r*Wp + w] = xpad[c, oh0 + r + i, w]        S (KH*C, R*Wp + KW - 1)

With kernel column j as a matrix, Wj[o, i*C + c] = W[o, c, i, j] (``stack_kernel``),

    wide = sum_j  Wj @ S[:, j : j + R*Wp]         (O, KH*C) @ (KH*C, R*Wp) -> (O, R*Wp)

and wide[o, r*Wp + ow] = sum_{i,c,j} W[o, c, i, j] xpad[c, oh0 + r + i, ow + j] =
y[o, oh0 + r, ow] for ow < OW = Wp - KW + 1. The last KW - 1 entries of each wide row mix two
input rows; they are dropped when the band is copied into y (S's KW - 1 extra columns are zeros
that only they read). Each view S[:, j : j + R*Wp] is a strided matrix (columns contiguous, rows
R*Wp + KW - 1 apart) that NumPy hands to BLAS as it is, without a copy.

Cost against im2col: the same multiplications (and the same rounding as any direct sum: no
Winograd transforms), KH copies of the input instead of KH*KW, and KW - 1 additions of partial
products, made while a band is in cache. conv_fast.py decides where this runs; there the input
gradient, a stride-1 convolution of gy with the flipped kernel (docs/convolution.md), runs
through the same function.
"""
from .backend import default_chunk, get_array_module
from .im2col import fill_padded_rows

BAND_ELEMENTS = 1 << 21   # at most this many elements in one band's S + wide + tmp (8 MB in
                          # float32), whatever the chunk: on the 2-core AMD EPYC, VGG's layers
                          # from 64 to 256 channels took 3-13% less time than with 16 MB bands


def supports(W_shape, stride, pad):
    """True for stride 1 with each pad at most the kernel's size - 1 (so that the input gradient
    is a convolution of gy with non-negative pads, which conv_fast.py runs through this file)."""
    KH, KW = W_shape[2:]
    pt, pb, pl, pr = pad
    return tuple(stride) == (1, 1) and max(pt, pb) <= KH - 1 and max(pl, pr) <= KW - 1


def stack_kernel(W):
    """Wst (KW, O, KH*C), Wst[j, o, i*C + c] = W[o, c, i, j]: kernel column j as one matrix."""
    xp = get_array_module(W)
    O, C, KH, KW = W.shape
    return xp.ascontiguousarray(W.transpose(3, 0, 2, 1)).reshape(KW, O, KH * C)


def band_rows(C, O, KH, OH, Wp, chunk):
    """Output rows per band: as many as keep S (KH*C rows) and wide and its partner tmp (O rows
    each), all R*Wp long, within ``chunk`` and BAND_ELEMENTS elements; at least 1."""
    return max(1, min(OH, min(chunk, BAND_ELEMENTS) // ((KH * C + 2 * O) * Wp)))


def shifted_conv_buffers(x_shape, W_shape, pad, *, chunk):
    """{name: elements} of the arrays shifted_conv allocates, all alive at its peak: y
    (N, O, OH, OW), the result; Wst, the stacked kernel (a copy of W); S (KH*C, R*Wp + KW - 1),
    wide and tmp (O, R*Wp), the band buffers."""
    (N, C, H, Wd), (O, _, KH, KW), (pt, pb, pl, pr) = x_shape, W_shape, pad
    Wp, OH = Wd + pl + pr, H + pt + pb - KH + 1
    R = band_rows(C, O, KH, OH, Wp, chunk)
    return dict(y=N * O * OH * (Wp - KW + 1), Wst=O * C * KH * KW, S=KH * C * (R * Wp + KW - 1),
                wide=O * R * Wp, tmp=O * R * Wp)


def fill_stack(x, first, pad, S):
    """S[i*C + c, r*Wp + w] = xpad[c, first + r + i, w] for the R rows S holds; its KW - 1 last
    columns zero. x (C, H, W) one image; S (KH*C, R*Wp + KW - 1), any view with contiguous rows."""
    C, Wp = x.shape[0], x.shape[2] + pad[2] + pad[3]
    KH, L = S.shape[0] // C, S.shape[1] - (S.shape[1] % Wp)    # L = R*Wp: KW - 1 < Wp extra
    rows = S[:, :L].reshape(KH, C, L // Wp, Wp)       # (KH*C, R*Wp) -> (KH, C, R, Wp), a view
    for i in range(KH):
        fill_padded_rows(x[None], first + i, pad, rows[i][None])
    S[:, L:] = 0
    return S


def shifted_conv(x, W, b, pad, *, chunk=None):
    """y = conv2d(x, W, b, stride=1, pad=pad) by shifted views: x (N, C, H, W), W (O, C, KH, KW),
    b (O,) or None; returns y (N, O, OH, OW), OH = H + pt + pb - KH + 1 (and OW), in the common
    dtype of x and W. ``chunk``: the most elements of one band's buffers (default_chunk)."""
    xp = get_array_module(x, W)
    (N, C, H, Wd), (O, _, KH, KW), (pt, pb, pl, pr) = x.shape, W.shape, pad
    Wp, OH = Wd + pl + pr, H + pt + pb - KH + 1
    OW, dtype = Wp - KW + 1, xp.result_type(x, W)
    R = band_rows(C, O, KH, OH, Wp, chunk or default_chunk(xp))
    Wst = stack_kernel(W.astype(dtype, copy=False))                 # (KW, O, KH*C)
    x = x.astype(dtype, copy=False)
    y = xp.empty((N, O, OH, OW), dtype=dtype)
    S = xp.empty((KH * C, R * Wp + KW - 1), dtype=dtype)
    wide, tmp = (xp.empty((O, R * Wp), dtype=dtype) for _ in range(2))
    for n in range(N):
        for oh0 in range(0, OH, R):
            r = min(R, OH - oh0)
            L = r * Wp
            band = fill_stack(x[n], oh0, pad, S[:, :L + KW - 1])
            out = wide[:, :L]
            xp.matmul(Wst[0], band[:, :L], out=out)         # (O, KH*C) @ (KH*C, r*Wp)
            for j in range(1, KW):
                xp.matmul(Wst[j], band[:, j:j + L], out=tmp[:, :L])   # a view: column j on
                out += tmp[:, :L]
            if b is not None:
                out += b.reshape(O, 1)                      # (O,) -> (O, 1)
            y[n, :, oh0:oh0 + r] = out.reshape(O, r, Wp)[:, :, :OW]   # drop KW - 1 per row
    return y
