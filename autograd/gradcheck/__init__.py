"""Gradient checking: does every hand-written backward agree with finite differences?

For y = f(x1, ..., xk) and an upstream gradient gy of y's shape, define the scalar
L(x1, ..., xk) = <gy, f(x1, ..., xk)> = sum(gy * y). Its gradient with respect to xi is exactly
what backpropagation computes from ``y.backward(gy)``. Finite differences estimate it too:
dL/dxi[j] ~ (L(xi + eps e_j) - L(xi - eps e_j)) / (2 eps), with e_j the j-th unit array (central
differences: error O(eps^2) plus rounding of order 1e-16 |L| / eps).

Three habits make a check able to fail where it matters (Chainer's ``check_backward`` has all):
a *random* gy (a backward that ignores gy passes when gy is all ones), float64 (in float32 the
rounding swamps the difference quotient), and non-square shapes (a transposed axis passes when
H == W). For large inputs, the *directional* check costs two evaluations per input instead of two
per element: a random direction v, and (L(x + eps v) - L(x - eps v)) / (2 eps) against <grad, v>.

``python -m miniautograd.gradcheck`` checks every op of the engine (the cases are in cases.py) and
prints a table; it exits with status 1 when any op fails.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module, is_cupy_array, to_cpu
from ..tensor import Tensor


@dataclass(frozen=True)
class GradcheckResult:
    """Outcome of ``gradcheck``: the largest relative error of each input's gradient.

    The check passes (``ok``, also ``bool(result)``) when every error is at most ``rtol``. (A
    gradient of the wrong shape never gets here: ``Tensor.backward`` raises ValueError.)
    """

    errors: tuple
    rtol: float
    atol: float
    out_shape: tuple
    directional: bool = False

    @property
    def ok(self):
        return all(e <= self.rtol for e in self.errors)   # False for nan too

    @property
    def max_error(self):
        return max(self.errors, default=0.0)

    def __bool__(self):
        return self.ok


def relative_error(analytic, numeric, *, rtol, atol):
    """Elementwise |a - n| / max(|a|, |n|, atol / rtol), a NumPy array.

    The floor atol / rtol guards tiny denominators: where both gradients are below it, the test
    "relative error <= rtol" becomes the absolute test |a - n| <= atol. In one line, an element
    passes when |a - n| <= max(rtol * max(|a|, |n|), atol).
    """
    a, n = np.asarray(to_cpu(analytic)), np.asarray(to_cpu(numeric))
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), atol / rtol)


def gradcheck(f, *inputs, gy=None, eps=1e-6, rtol=1e-4, atol=1e-6, seed=0, directional=False):
    """Compare the analytic gradient of every input of ``f`` with finite differences.

    f maps Tensors to one Tensor; ``inputs`` are float64 arrays (NumPy or CuPy). ``gy`` is the
    upstream gradient (default: standard normal, drawn with ``seed``). ``directional=True`` checks
    one random direction per input instead of every element. Returns a GradcheckResult.

    Relative error of analytic a against numeric n, elementwise: |a - n| / max(|a|, |n|,
    atol / rtol) (see ``relative_error``); input i's entry in the result is its largest, and the
    check passes when each is <= rtol. Defaults: with eps = 1e-6 the difference quotient is off
    by about 1e-12 (truncation) plus 1e-10 |L| (rounding), far below rtol = 1e-4, which still
    catches a backward wrong by a factor of 1.001.
    """
    xs = [_float64_input(x, i) for i, x in enumerate(inputs)]
    xp = get_array_module(*xs)
    rng = np.random.default_rng(seed)
    out_shape, gy, grads = _analytic_gradients(f, xs, gy, rng)

    def loss(arrays):
        out = f(*(Tensor(a) for a in arrays)).data
        return float(to_cpu((gy * out).sum()))

    errors = []
    for i, (x, g) in enumerate(zip(xs, grads)):
        if directional:
            v = xp.asarray(rng.standard_normal(x.shape))
            numeric = _directional_derivative(loss, xs, i, v, eps)
            errors.append(float(relative_error(float(to_cpu((g * v).sum())), numeric,
                                               rtol=rtol, atol=atol)))
        else:
            numeric = _numeric_gradient(loss, xs, i, eps)
            errors.append(float(relative_error(g, numeric, rtol=rtol, atol=atol).max(initial=0.0)))
    return GradcheckResult(tuple(errors), rtol, atol, out_shape, directional)


def _float64_input(x, i):
    x = x.data if isinstance(x, Tensor) else x
    x = x if is_cupy_array(x) else np.asarray(x)  # a NumPy scalar becomes a writable 0-d array
    if x.dtype != np.float64:
        raise TypeError(f"gradcheck: input {i} has dtype {x.dtype}; pass float64 arrays "
                        "(finite differences need the precision)")
    return x


def _analytic_gradients(f, xs, gy, rng):
    """Run f on leaf tensors and backprop gy (random if None): (y's shape, gy, input gradients)."""
    xp = get_array_module(*xs)
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = f(*leaves)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor, not {type(y).__name__}")
    gy = rng.standard_normal(y.shape) if gy is None else (gy.data if isinstance(gy, Tensor) else gy)
    gy = xp.asarray(gy, dtype=np.float64)
    if y.requires_grad:
        y.backward(gy)
    grads = [xp.zeros_like(x) if t.grad is None else t.grad for x, t in zip(xs, leaves)]
    return tuple(y.shape), gy, grads


def _numeric_gradient(loss, xs, i, eps):
    """Central differences of loss with respect to every element of xs[i], one at a time."""
    x = xs[i].copy()
    flat = x.reshape(-1)                          # (size,) view of the copy, written in place
    arrays = xs[:i] + [x] + xs[i + 1:]
    g = np.zeros(x.size)
    for j in range(x.size):
        old = flat[j].copy()
        flat[j] = old + eps
        up = loss(arrays)
        flat[j] = old - eps
        down = loss(arrays)
        flat[j] = old
        g[j] = (up - down) / (2 * eps)
    return g.reshape(x.shape)


def _directional_derivative(loss, xs, i, v, eps):
    """(L(xi + eps v) - L(xi - eps v)) / (2 eps): the derivative of L along direction v."""
    up = loss(xs[:i] + [xs[i] + eps * v] + xs[i + 1:])
    down = loss(xs[:i] + [xs[i] - eps * v] + xs[i + 1:])
    return (up - down) / (2 * eps)
