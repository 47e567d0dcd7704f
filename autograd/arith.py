"""Elementwise arithmetic, reductions, reshapes and matmul: the simplest ops, read these second.

Each op is a ``Function`` subclass (forward and backward on arrays) plus a snake_case wrapper that
users call (``add(a, b)``, or ``a + b`` through Tensor's operators).

Broadcasting. NumPy lets ``x`` of shape (3, 1) meet ``y`` of shape (4,) and gives (3, 4): x was
copied along the axes it lacked or had as 1. Each copy of x[i] contributed to the output, so
dL/dx[i] is the *sum* of gy over the copies: ``sum_to(gy, x.shape)`` sums gy over the broadcast
axes. Every elementwise backward below ends with it.
"""
import numpy as np

from .backend import get_array_module
from .tensor import Function


def sum_to(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, so it gets ``shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)                     # leading axes broadcasting added
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    g = g.sum(axis=tuple(range(extra)) + stretched, keepdims=True)
    return g.reshape(shape)


class _Elementwise(Function):
    """Two-input elementwise op: checks that the shapes broadcast, remembers them for backward."""

    def check_shapes(self, a, b):
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{self.name}: shapes {a.shape} and {b.shape} cannot be broadcast "
                             "together (trailing dimensions must be equal or 1)") from None
        self.shapes = (a.shape, b.shape)


class Add(_Elementwise):
    """y = a + b.  da = gy, db = gy (each summed back to its input's shape)."""

    def forward(self, a, b):
        self.check_shapes(a, b)
        return a + b

    def backward(self, gy):
        ga = sum_to(gy, self.shapes[0]) if self.needs_grad[0] else None
        gb = sum_to(gy, self.shapes[1]) if self.needs_grad[1] else None
        return ga, gb


class Sub(_Elementwise):
    """y = a - b.  da = gy, db = -gy."""

    def forward(self, a, b):
        self.check_shapes(a, b)
        return a - b

    def backward(self, gy):
        ga = sum_to(gy, self.shapes[0]) if self.needs_grad[0] else None
        gb = sum_to(-gy, self.shapes[1]) if self.needs_grad[1] else None
        return ga, gb


class Mul(_Elementwise):
    """y = a * b.  da = gy * b, db = gy * a.  Kept: b if a needs a gradient, a if b does."""

    def forward(self, a, b):
        self.check_shapes(a, b)
        if self.recording:
            self.b = b if self.needs_grad[0] else None
            self.a = a if self.needs_grad[1] else None
        return a * b

    def backward(self, gy):
        ga = sum_to(gy * self.b, self.shapes[0]) if self.needs_grad[0] else None
        gb = sum_to(gy * self.a, self.shapes[1]) if self.needs_grad[1] else None
        return ga, gb


class Div(_Elementwise):
    """y = a / b.  da = gy / b, db = -gy * a / b^2 = -gy * y / b.  Kept: b; y if b needs one."""

    def forward(self, a, b):
        self.check_shapes(a, b)
        y = a / b
        if self.recording:
            self.b, self.y = b, y if self.needs_grad[1] else None
        return y

    def backward(self, gy):
        ga = sum_to(gy / self.b, self.shapes[0]) if self.needs_grad[0] else None
        gb = sum_to(-gy * self.y / self.b, self.shapes[1]) if self.needs_grad[1] else None
        return ga, gb


class Neg(Function):
    """y = -x.  dx = -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return (-gy,)


class Power(Function):
    """y = x ** p for a constant number p.  dx = gy * p * x^(p-1)."""

    def __init__(self, p):
        if not np.isscalar(p):
            raise TypeError(f"Power: the exponent must be a number, not {type(p).__name__}")
        self.p = p

    def forward(self, x):
        if self.recording:
            self.x = x
        return x ** x.dtype.type(self.p)   # a NumPy float64 exponent must not upcast float32 x

    def backward(self, gy):
        p = self.x.dtype.type(self.p)
        return (gy * p * self.x ** (p - 1),)


class Sum(Function):
    """y = sum of x over ``axis`` (all axes if None).  dx = gy broadcast back to x's shape."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x_shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        return (xp.broadcast_to(_restore_axes(gy, self.x_shape, self.axis, self.keepdims),
                                self.x_shape),)


class Mean(Sum):
    """y = mean of x over ``axis``.  dx = gy / n broadcast back, n = number of averaged entries."""

    def forward(self, x):
        y = super().forward(x)
        self.n = x.size // max(y.size, 1)
        return y / self.n

    def backward(self, gy):
        (gx,) = super().backward(gy / self.n)
        return (gx,)


def _restore_axes(gy, x_shape, axis, keepdims):
    """Give gy back the axes a reduction removed (as size 1) so it broadcasts against x."""
    if keepdims or axis is None:
        return gy.reshape((1,) * len(x_shape)) if axis is None else gy
    axes = (axis,) if np.isscalar(axis) else axis
    axes = sorted(a % len(x_shape) for a in axes)
    shape = list(gy.shape)
    for a in axes:
        shape.insert(a, 1)
    return gy.reshape(shape)


class Reshape(Function):
    """y = x viewed with another shape.  dx = gy reshaped back to x's shape."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an array of shape {x.shape} "
                             f"({x.size} elements) to {self.shape}") from None

    def backward(self, gy):
        return (gy.reshape(self.x_shape),)


class Transpose(Function):
    """y = x with its axes permuted by ``axes`` (reversed if None).  dx = gy permuted back."""

    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None:   # negative axes made positive, or argsort would not invert them
            self.axes = tuple(a % x.ndim for a in self.axes)
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return (gy.transpose(),)
        return (gy.transpose(np.argsort(self.axes)),)


class MatMul(Function):
    """y = a @ b for a (..., n, k) and b (..., k, m), giving (..., n, m).

    da = gy @ b^T  (n, m) @ (m, k);  db = a^T @ gy  (k, n) @ (n, m); batch axes summed back.
    Kept: b (and a's shape) if a needs a gradient, a (and b's shape) if b does.
    1-D operands are not supported: reshape them to a row or a column first.
    """

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit; need "
                             "(..., n, k) @ (..., k, m) with the same k and at least 2 dimensions")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: the batch axes of shapes {a.shape} and {b.shape} cannot be "
                             "broadcast together") from None
        if self.recording:
            self.shapes = (a.shape, b.shape)
            self.b = b if self.needs_grad[0] else None
            self.a = a if self.needs_grad[1] else None
        return a @ b

    def backward(self, gy):
        ga = gb = None
        if self.needs_grad[0]:
            ga = sum_to(gy @ self.b.swapaxes(-1, -2), self.shapes[0])
        if self.needs_grad[1]:
            gb = sum_to(self.a.swapaxes(-1, -2) @ gy, self.shapes[1])
        return ga, gb


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(x):
    return Neg()(x)


def power(x, p):
    return Power(p)(x)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - mirrors numpy.sum
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def reshape(x, shape):
    return Reshape(shape)(x)


def transpose(x, axes=None):
    return Transpose(axes)(x)


def matmul(a, b):
    return MatMul()(a, b)
