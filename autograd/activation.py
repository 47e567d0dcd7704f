"""The activation function of VGG: the rectified linear unit.

relu(x) = max(x, 0), elementwise. It passes a positive input through unchanged (slope 1) and
stops a negative one (slope 0), so its backward lets gy through exactly where x was positive.
At x = 0 the derivative is undefined; we use 0 there, as Chainer and PyTorch do.

Speed. ReLU does one comparison per element: its time is that of the memory it touches. The
forward (``relu_forward``) goes band by band, BAND_ELEMENTS at a time, so that x, read for the
mask, is read again for y from the cache, not from memory; with ``inplace=True`` y is written
over x (no new array: no fresh memory to fault in), for a caller that will read x no more, such as a network
dropping a convolution's output once its ReLU has run. The backward cannot work in place:
backpropagation may hand the same gy to several functions (an addition passes it to both of its
inputs) or pass the caller's own array, so gy * mask is a new array, as every backward's is.
"""
import numpy as np

from .backend import get_array_module
from .tensor import Function

BAND_ELEMENTS = 1 << 18   # 1 MB of float32: within every L2 cache (bench/README.md measured it)


def relu_forward(x, *, out=None):
    """(y, mask) on arrays: mask = x > 0 (bool), y = x * mask (x's dtype), into ``out`` if given.

    A contiguous NumPy x goes in flat bands of BAND_ELEMENTS, each compared and multiplied while
    in the CPU's cache; any other x (and every CuPy x: a GPU has no such cache to keep, and each
    band would cost two kernel launches) in two whole passes. Both give the same values.
    """
    xp = get_array_module(x)
    mask = xp.empty(x.shape, dtype=bool)
    y = xp.empty_like(x) if out is None else out
    if xp is not np or not (x.flags.c_contiguous and y.flags.c_contiguous):
        xp.greater(x, 0, out=mask)
        return xp.multiply(x, mask, out=y), mask
    flat_x, flat_y, flat_mask = x.reshape(-1), y.reshape(-1), mask.reshape(-1)   # views
    for start in range(0, x.size, BAND_ELEMENTS):
        band = slice(start, start + BAND_ELEMENTS)
        xp.greater(flat_x[band], 0, out=flat_mask[band])
        xp.multiply(flat_x[band], flat_mask[band], out=flat_y[band])
    return y, mask


class ReLU(Function):
    """y = max(x, 0), elementwise; any shape. ``inplace``: write y over x's array.

    Backward: dx = gy * [x > 0], the indicator of a positive input, of x's shape.
    Kept for backward: only the boolean mask ``x > 0`` (one byte per element), not x or y.
    """

    def __init__(self, *, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        y, mask = relu_forward(x, out=x if self.inplace else None)
        if self.recording:
            self.mask = mask
        return y

    def backward(self, gy):
        return (gy * self.mask,)


def relu(x, *, inplace=False):
    """Rectified linear unit max(x, 0) of a Tensor (or array), elementwise; same shape.

    ``inplace=True`` overwrites x's array with the result and returns a Tensor on that same
    array: only for an x that nothing will read again (the gradient is unaffected: backward
    needs only the mask).
    """
    return ReLU(inplace=inplace)(x)
