"""im2col and col2im: sliding windows as array copies, shared by convolution and pooling.

Notation (used by conv.py and pooling.py too): N batch, C input channels, H, W input height and
width, O output channels, KH, KW kernel height and width, (sh, sw) the stride, (pt, pb, pl, pr) the
zero padding at the top, bottom, left and right (MatConvNet's order), Hp = H + pt + pb and
Wp = W + pl + pr the padded size, and OH, OW the output size:

    OH = 1 + (Hp - KH) // sh,    OW = 1 + (Wp - KW) // sw        (CS231n's formula)

Output pixel (oh, ow) sees the window of the padded input xpad[.., sh*oh + i, sw*ow + j] for
0 <= i < KH, 0 <= j < KW. im2col copies every window into a column:

    col[n, c, i, j, oh, ow] = xpad[n, c, sh*oh + i, sw*ow + j]       col: (N, C, KH, KW, OH, OW)

The loop runs over the KH*KW offsets (i, j), never over pixels: for a fixed offset, all the
(oh, ow) entries form one strided slice ``xpad[:, :, i : i + sh*OH : sh, j : j + sw*OW : sw]``, so
each step is a single array copy. That is why the same code runs on NumPy and CuPy. col2im is the
adjoint (the transpose of im2col as a linear map): the same loop, with ``+=`` into the slices, so
a padded-input pixel that several windows share receives the sum of their entries.

Also here: the zero padding (of the whole input, or of the band of rows one chunk of a
convolution reads: ``pad_rows``), the parsing of the ``kernel``, ``stride`` and ``pad``
arguments, and the output size.
"""
import numpy as np

from .backend import get_array_module


def window_slices(KH, KW, stride, OH, OW):
    """Yield (i, j, rows, cols): for each kernel offset, the slices of the padded input it reads.

    ``xpad[:, :, rows, cols]`` is (N, C, OH, OW); its entry (oh, ow) is xpad[.., sh*oh+i, sw*ow+j].
    """
    sh, sw = stride
    for i in range(KH):
        for j in range(KW):
            yield i, j, slice(i, i + sh * OH, sh), slice(j, j + sw * OW, sw)


def im2col(xpad, KH, KW, *, stride, out=None):
    """The windows of an already padded input as columns.

    xpad: (N, C, Hp, Wp) -> col: (N, C, KH, KW, OH, OW), col[n, c, i, j, oh, ow] =
    xpad[n, c, sh*oh + i, sw*ow + j]. ``out`` is an optional flat buffer with at least as many
    elements as col; col is then a view of its first elements (no allocation per call).
    """
    N, C, Hp, Wp = xpad.shape
    OH, OW = 1 + (Hp - KH) // stride[0], 1 + (Wp - KW) // stride[1]
    shape = (N, C, KH, KW, OH, OW)
    if out is None:
        col = get_array_module(xpad).empty(shape, dtype=xpad.dtype)
    else:
        col = out[:int(np.prod(shape))].reshape(shape)   # flat prefix -> (N, C, KH, KW, OH, OW)
    for i, j, rows, cols in window_slices(KH, KW, stride, OH, OW):
        col[:, :, i, j] = xpad[:, :, rows, cols]          # (N, C, OH, OW) strided slice
    return col


def col2im(col, *, stride, out):
    """Add the columns back into a padded input: the adjoint of im2col, in place.

    col: (N, C, KH, KW, OH, OW); out: (N, C, Hp, Wp), to which
    col[n, c, i, j, oh, ow] is added at [n, c, sh*oh + i, sw*ow + j]. Returns out.
    Windows that overlap (stride < kernel) add several entries into one pixel.
    """
    N, C, KH, KW, OH, OW = col.shape
    for i, j, rows, cols in window_slices(KH, KW, stride, OH, OW):
        out[:, :, rows, cols] += col[:, :, i, j]         # (N, C, OH, OW) strided slice
    return out


def pad_input(x, pad, *, value=0.0):
    """x (N, C, H, W) surrounded by ``value``: (N, C, H + pt + pb, W + pl + pr).

    Returns x itself (no copy) when every pad is 0.
    """
    pt, pb, pl, pr = pad
    if not any(pad):
        return x
    N, C, H, W = x.shape
    xp = get_array_module(x)
    padded = xp.empty((N, C, H + pt + pb, W + pl + pr), dtype=x.dtype)
    padded[:, :, pt:pt + H, pl:pl + W] = x
    for border in (padded[:, :, :pt], padded[:, :, pt + H:],     # only the frame is filled: the
                   padded[:, :, pt:pt + H, :pl], padded[:, :, pt:pt + H, pl + W:]):  # inside once
        border[...] = value
    return padded


def pad_rows(x, rows, pad, *, out):
    """Rows ``rows`` of x padded with zeros, xpad[:, :, rows], built in a buffer: no full xpad.

    x (N, C, H, W); rows, a slice of padded-input rows (within 0 .. H + pt + pb); out, a flat
    buffer of at least N*C*R*Wp elements (R rows). Returns the (N, C, R, Wp) view of out, or,
    without padding, the slice of x itself (no copy). Convolutions call this per chunk, so the
    copy stays small and in cache until im2col reads it.
    """
    if not any(pad):
        return x[:, :, rows]
    (N, C, H, W), (pt, _, pl, pr), R = x.shape, pad, rows.stop - rows.start
    band = out[:N * C * R * (W + pl + pr)].reshape(N, C, R, W + pl + pr)  # flat -> (N, C, R, Wp)
    return fill_padded_rows(x, rows.start, pad, band)


def fill_padded_rows(x, first, pad, band):
    """Write rows first .. first+R-1 of the zero-padded x into ``band`` (N, C, R, Wp), any view.

    x (N, C, H, W); ``first`` counts padded-input rows (row pt is x's row 0). Only the band's
    padding is zeroed, only x's rows copied. Returns band.
    """
    (N, C, H, W), (pt, _, pl, _), R = x.shape, pad, band.shape[2]
    top = min(R, max(0, pt - first))                 # band rows above x's first row
    end = max(top, min(R, H + pt - first))           # band rows up to x's last row
    band[:, :, :top] = 0
    band[:, :, end:] = 0
    band[:, :, top:end, :pl] = 0
    band[:, :, top:end, pl + W:] = 0
    band[:, :, top:end, pl:pl + W] = x[:, :, first + top - pt:first + end - pt]
    return band


def unpad(padded, pad):
    """The inner (N, C, H, W) part of a padded (N, C, Hp, Wp) array (a view; no copy)."""
    pt, pb, pl, pr = pad
    Hp, Wp = padded.shape[2:]
    return padded[:, :, pt:Hp - pb, pl:Wp - pr]


# -- arguments -----------------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def as_pair(value, *, op, name, minimum=1):
    """An int or a pair of ints (>= minimum) as a pair: 2 -> (2, 2), (3, 1) -> (3, 1)."""
    pair = (value, value) if _is_int(value) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(_is_int(v) and v >= minimum for v in pair)):
        raise ValueError(f"{op}: {name} must be an int >= {minimum} or a pair of them, "
                         f"got {value!r}")
    return int(pair[0]), int(pair[1])


def as_pad(pad, *, op):
    """pad as (top, bottom, left, right): p -> all four p; (ph, pw) -> (ph, ph, pw, pw)."""
    if _is_int(pad):
        pad = (pad,) * 4
    elif isinstance(pad, (tuple, list)) and len(pad) == 2:
        pad = (pad[0], pad[0], pad[1], pad[1])
    if (not isinstance(pad, (tuple, list)) or len(pad) != 4
            or not all(_is_int(p) and p >= 0 for p in pad)):
        raise ValueError(f"{op}: pad must be an int >= 0, (ph, pw) or (top, bottom, left, right), "
                         f"got {pad!r}")
    return tuple(int(p) for p in pad)


def output_size(x_shape, kernel, stride, pad, *, op):
    """(OH, OW) for an input (N, C, H, W); ValueError if the kernel exceeds the padded input."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: the input must have shape (N, C, H, W); got shape {x_shape}")
    (KH, KW), (sh, sw), (pt, pb, pl, pr) = kernel, stride, pad
    Hp, Wp = x_shape[2] + pt + pb, x_shape[3] + pl + pr
    if KH > Hp or KW > Wp:
        raise ValueError(f"{op}: the kernel {KH}x{KW} is larger than the padded input {Hp}x{Wp} "
                         f"(input shape {x_shape}, pad {pad})")
    return 1 + (Hp - KH) // sh, 1 + (Wp - KW) // sw
