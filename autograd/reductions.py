"""The two losses of style transfer that reduce a whole array to one number.

Both are single Functions with a hand-derived backward rather than a chain of small ops
(subtract, square, sum): they run at every step of the optimisation, and one node keeps one
temporary instead of four. Both are *summed, not averaged*; the caller (minivgg's losses) applies
whatever normalisation the paper asks for.

Notation: N batch, C channels, H height, W width.
"""
import numpy as np

from .backend import get_array_module
from .tensor import Function


def sum_of_squares(*arrays):
    """sum(a^2) over every element of every array, accumulated in float64 at least, returned in
    the first array's dtype as an array of shape ().

    A float32 dot product (vdot) accumulates in float32: on 8M random elements OpenBLAS's was
    5.7e-5 off, and style transfer's loss at 512 px 6.8e-7 off a float64 run (2.1e-9 with this
    sum). So float32 arrays are summed in float64: on NumPy by einsum, which casts in small
    buffers (nothing of the arrays' size is allocated). float64 arrays keep vdot, BLAS's
    float64 dot product.
    """
    xp, dtype = get_array_module(*arrays), arrays[0].dtype
    if dtype.itemsize >= 8:
        total = sum(xp.vdot(a, a) for a in arrays)
    elif xp is np:
        total = sum(np.einsum("i,i->", a.ravel(), a.ravel(), dtype=np.float64) for a in arrays)
    else:
        total = sum(xp.sum(a * a, dtype=xp.float64) for a in arrays)
    return xp.asarray(total, dtype=dtype)


class SumSquaredError(Function):
    """L = sum((x - t)^2) over every element; x and t of the same shape, L a scalar of shape ().

    Backward: dL/dx = 2 gy (x - t) and dL/dt = -2 gy (x - t), each of x's shape, computed only for
    the inputs that need them (usually t is a constant target). Kept for backward: d = x - t.
    Shapes must match exactly: no broadcasting, so a target of the wrong size is an error.
    """

    def forward(self, x, t):
        if x.shape != t.shape:
            raise ValueError(f"sum_squared_error: x has shape {x.shape} but the target has shape "
                             f"{t.shape}; they must be equal")
        get_array_module(x, t)                    # one sentence for a NumPy / CuPy mix
        d = x - t
        if self.recording:
            self.d = d
        return sum_of_squares(d)                  # sum of d^2 in one pass, shape ()

    def backward(self, gy):
        g = (2 * gy) * self.d                     # 2 gy (x - t), x's shape
        return (g if self.needs_grad[0] else None, -g if self.needs_grad[1] else None)


class TotalVariation(Function):
    """L = sum of squared differences of neighbouring pixels; x: (N, C, H, W) -> L of shape ().

    With dv = x[:, :, 1:, :] - x[:, :, :-1, :]  (N, C, H-1, W), vertical neighbours,
    and  dh = x[:, :, :, 1:] - x[:, :, :, :-1]  (N, C, H, W-1), horizontal neighbours,
    L = sum(dv^2) + sum(dh^2), unnormalised.

    Backward. Each pixel is the "+" end of one difference and the "-" end of another:
    dL/dx[i+1, j] gets +2 gy dv[i, j] and dL/dx[i, j] gets -2 gy dv[i, j]; likewise for dh
    along the columns. Kept for backward: dv and dh.
    """

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"total_variation: the input must have shape (N, C, H, W); got "
                             f"shape {x.shape}")
        dv = x[:, :, 1:, :] - x[:, :, :-1, :]     # (N, C, H-1, W)
        dh = x[:, :, :, 1:] - x[:, :, :, :-1]     # (N, C, H, W-1)
        if self.recording:
            self.dv, self.dh = dv, dh
        return sum_of_squares(dv, dh)             # shape ()

    def backward(self, gy):
        xp = get_array_module(gy)
        gv, gh = (2 * gy) * self.dv, (2 * gy) * self.dh
        N, C, Hm1, W = gv.shape
        gx = xp.zeros((N, C, Hm1 + 1, W), dtype=gv.dtype)
        gx[:, :, 1:, :] += gv
        gx[:, :, :-1, :] -= gv
        gx[:, :, :, 1:] += gh
        gx[:, :, :, :-1] -= gh
        return (gx,)


def sum_squared_error(x, target):
    """sum((x - target)^2), a scalar Tensor; target is a constant array or a Tensor."""
    return SumSquaredError()(x, target)


def total_variation(x):
    """Unnormalised total variation of images (N, C, H, W): summed squared neighbour differences."""
    return TotalVariation()(x)
