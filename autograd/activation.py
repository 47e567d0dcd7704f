"""The activation function of VGG: the rectified linear unit.

relu(x) = max(x, 0), elementwise. It passes a positive input through unchanged (slope 1) and
stops a negative one (slope 0), so its backward lets gy through exactly where x was positive.
At x = 0 the derivative is undefined; we use 0 there, as Chainer and PyTorch do.

Speed. ReLU does one comparison per element: its time is that of the memory it touches. The
forward reads x once and writes the mask and y; with ``inplace=True`` y is written over x (no new
array: no fresh memory to fault in), for a caller that will read x no more, such as a network
dropping a convolution's output once its ReLU has run. The backward cannot work in place:
backpropagation may hand the same gy to several functions (an addition passes it to both of its
inputs) or pass the caller's own array, so gy * mask is a new array, as every backward's is.
"""
from .backend import get_array_module
from .tensor import Function


class ReLU(Function):
    """y = max(x, 0), elementwise; any shape. ``inplace``: write y over x's array.

    Backward: dx = gy * [x > 0], the indicator of a positive input, of x's shape.
    Kept for backward: only the boolean mask ``x > 0`` (one byte per element), not x or y.
    """

    def __init__(self, *, inplace=False):
        self.inplace = inplace

    def forward(self, x):
        mask = x > 0
        if self.recording:
            self.mask = mask
        out = x if self.inplace else None                 # mask is bool: x where positive,
        return get_array_module(x).multiply(x, mask, out=out)   # 0 elsewhere, in x's dtype

    def backward(self, gy):
        return (gy * self.mask,)


def relu(x, *, inplace=False):
    """Rectified linear unit max(x, 0) of a Tensor (or array), elementwise; same shape.

    ``inplace=True`` overwrites x's array with the result and returns a Tensor on that same
    array: only for an x that nothing will read again (the gradient is unaffected: backward
    needs only the mask).
    """
    return ReLU(inplace=inplace)(x)
