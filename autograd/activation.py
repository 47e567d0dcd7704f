"""The activation function of VGG: the rectified linear unit.

relu(x) = max(x, 0), elementwise. It passes a positive input through unchanged (slope 1) and
stops a negative one (slope 0), so its backward lets gy through exactly where x was positive.
At x = 0 the derivative is undefined; we use 0 there, as Chainer and PyTorch do.
"""
from .tensor import Function


class ReLU(Function):
    """y = max(x, 0), elementwise; any shape.

    Backward: dx = gy * [x > 0], the indicator of a positive input, of x's shape.
    Kept for backward: only the boolean mask ``x > 0`` (one byte per element), not x or y.
    """

    def forward(self, x):
        mask = x > 0
        if self.recording:
            self.mask = mask
        return x * mask  # mask is bool: x where positive, 0 elsewhere, in x's dtype

    def backward(self, gy):
        return (gy * self.mask,)


def relu(x):
    """Rectified linear unit max(x, 0) of a Tensor (or array), elementwise; same shape."""
    return ReLU()(x)
