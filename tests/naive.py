"""Loop oracles: convolution and pooling written as directly from their definitions as possible.

The fast ops in miniautograd must match these. They are slow (Python loops over every output
pixel), take only NumPy arrays, and use their own padding (np.pad), so a mistake in the engine's
im2col, padding or argument parsing does not repeat itself here. Arguments are explicit:
stride (sh, sw) and pad (top, bottom, left, right).
"""
import numpy as np


def pad_naive(x, pad, value=0.0):
    """x (N, C, H, W) padded with ``value``: (N, C, H + top + bottom, W + left + right)."""
    top, bottom, left, right = pad
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def windows(x, kernel, stride, pad, value=0.0):
    """Yield (n, c, oh, ow, window) for every window of every channel: window is (KH, KW)."""
    (KH, KW), (sh, sw) = kernel, stride
    xp = pad_naive(x, pad, value)
    N, C, Hp, Wp = xp.shape
    for n in range(N):
        for c in range(C):
            for oh in range((Hp - KH) // sh + 1):
                for ow in range((Wp - KW) // sw + 1):
                    yield n, c, oh, ow, xp[n, c, sh * oh:sh * oh + KH, sw * ow:sw * ow + KW]


def conv2d_naive(x, W, b=None, stride=(1, 1), pad=(0, 0, 0, 0)):
    """y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] * xpad[n, c, sh*oh + i, sw*ow + j]."""
    (N, C, H, Wd), (O, _, KH, KW), (sh, sw) = x.shape, W.shape, stride
    xp = pad_naive(x, pad)
    OH, OW = (xp.shape[2] - KH) // sh + 1, (xp.shape[3] - KW) // sw + 1
    y = np.zeros((N, O, OH, OW), dtype=np.result_type(x, W))
    for n in range(N):
        for o in range(O):
            for oh in range(OH):
                for ow in range(OW):
                    window = xp[n, :, sh * oh:sh * oh + KH, sw * ow:sw * ow + KW]
                    y[n, o, oh, ow] = np.sum(window * W[o]) + (0 if b is None else b[o])
    return y


def _pool_naive(x, kernel, stride, pad, reduce, value):
    (KH, KW), (sh, sw), (top, bottom, left, right) = kernel, stride, pad
    N, C, H, W = x.shape
    y = np.zeros((N, C, (H + top + bottom - KH) // sh + 1, (W + left + right - KW) // sw + 1),
                 dtype=x.dtype)
    for n, c, oh, ow, window in windows(x, kernel, stride, pad, value):
        y[n, c, oh, ow] = reduce(window)
    return y


def avg_pool_naive(x, kernel, stride, pad=(0, 0, 0, 0)):
    """Mean over each window of the zero-padded input, always dividing by KH*KW."""
    return _pool_naive(x, kernel, stride, pad, lambda w: w.sum() / w.size, 0.0)


def max_pool_naive(x, kernel, stride, pad=(0, 0, 0, 0)):
    """Maximum over each window of the input padded with -inf."""
    return _pool_naive(x, kernel, stride, pad, np.max, -np.inf)


def max_pool_grad_naive(x, gy, kernel, stride, pad=(0, 0, 0, 0)):
    """dL/dx of max pooling: each window passes its gy to its (first) largest entry."""
    (KH, KW), (sh, sw), (top, bottom, left, right) = kernel, stride, pad
    gxpad = np.zeros_like(pad_naive(x, pad))
    for n, c, oh, ow, window in windows(x, kernel, stride, pad, -np.inf):
        i, j = np.unravel_index(np.argmax(window), window.shape)
        gxpad[n, c, sh * oh + i, sw * ow + j] += gy[n, c, oh, ow]
    return gxpad[:, :, top:gxpad.shape[2] - bottom, left:gxpad.shape[3] - right]
