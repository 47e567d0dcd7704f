"""Tensors, the graph they build, and backpropagation over it.

Read this file first. A ``Tensor`` wraps an array (``.data``, NumPy or CuPy). Applying a
``Function`` to tensors runs its ``forward`` on the arrays and, when some input requires a
gradient, records the function as the output's ``creator``: the program's own run defines the
graph (define-by-run). ``y.backward()`` then walks that graph from ``y`` back to the leaves.

Backpropagation in one paragraph. Let L be a scalar. Write ``gy`` for dL/dy, the gradient of L
with respect to an array y, always of y's shape. A function y = f(x1, ..., xk) knows only its local
derivatives; its ``backward(gy)`` returns ``gx_i = dL/dx_i = (dy/dx_i)^T gy`` for each input (the
chain rule, written per op in each op's docstring). Starting from ``gy = 1`` at L, we call every
function's backward once, in an order where a function comes only after every function that used
its output: its ``gy`` is then complete. When a tensor feeds several functions its gradient is the
sum of their contributions (``+``, never ``=``). The order used here: each function has a
*generation*, one more than the largest generation of its inputs' creators; a max-heap on
generation pops the deepest function first (among equal generations, the one recorded last, so
the order, and the rounding of every sum, is the same in every run). The walk is a loop, not a
recursion, so a graph thousands of ops deep is fine.

Gradients are kept only where they are asked for. A tensor made by the user (a *leaf*) gets
``.grad`` when it has ``requires_grad=True``; a function records a graph only when some input
requires a gradient, and it tells its backward which inputs do (``self.needs_grad``), so a frozen
weight costs no weight-gradient work at all. Intermediate tensors' gradients are dropped as soon as
they have been used. Second-order gradients (backward of backward) are not a goal of this engine.

Memory. A function does not hold its non-leaf inputs' arrays: it records only an ``Edge`` (which
function made the input, its generation and shape), which is all backpropagation needs. So a
network's intermediate outputs are freed as soon as the program drops them, and what survives
until backward is only what each op chose to keep (ReLU a boolean mask, max-pool its argmax...).
In backward, a function's gy is dropped as soon as its backward returns, before the sums that
its results join allocate: with a style loss on relu1_1 that sum is image-sized, and at 512 px
the iteration's peak fell from 466.9 to 410.5 MiB (bench/README.md).

dtypes: float32 and float64 arrays are kept as they are; bool, integer and float16 data are cast
to float32 (float16 has too little precision for gradients); complex data is refused.
"""
import heapq
import itertools

import numpy as np

from .backend import get_array_module, is_cupy_array, to_cpu, to_gpu


def as_float_array(data):
    """The array for a Tensor: float32/float64 kept, bool/int/float16 cast to float32.

    Python scalars and lists become NumPy arrays; CuPy arrays stay on the GPU.
    """
    a = data if is_cupy_array(data) else np.asarray(data)
    if a.dtype in (np.float32, np.float64):
        return a
    if a.dtype.kind in "biuf":
        return a.astype(np.float32)
    raise TypeError(f"Tensor data must be real numbers; got an array of dtype {a.dtype}")


class Tensor:
    """An array (``.data``, NumPy or CuPy) with an optional gradient (``.grad``, same shape)."""

    __array_priority__ = 1000  # ndarray + Tensor calls Tensor.__radd__ rather than NumPy's add

    def __init__(self, data, *, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = as_float_array(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.creator = None     # the Function whose output this is; None for a leaf
        self.generation = 0     # 0 for leaves, creator's generation + 1 otherwise

    # -- array-like properties ------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        device = "gpu" if is_cupy_array(self.data) else "cpu"
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={device}{grad})"

    def numpy(self):
        """The data as a NumPy array (copied from the GPU if needed)."""
        return to_cpu(self.data)

    def item(self):
        """The value of a one-element tensor as a Python float."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element; this one has shape {self.shape}")
        return float(self.numpy().reshape(-1)[0])

    # -- devices --------------------------------------------------------------------------
    def to_gpu(self):
        """A new leaf tensor with the data on the GPU (same requires_grad)."""
        return Tensor(to_gpu(self.data), requires_grad=self.requires_grad, name=self.name)

    def to_cpu(self):
        """A new leaf tensor with the data on the CPU (same requires_grad)."""
        return Tensor(to_cpu(self.data), requires_grad=self.requires_grad, name=self.name)

    # -- backpropagation ------------------------------------------------------------------
    def zero_grad(self):
        """Forget the accumulated gradient."""
        self.grad = None

    def backward(self, gy=None, *, hook=None):
        """Accumulate dL/dleaf into ``.grad`` of every leaf that requires it.

        ``gy`` is dL/dself, of self's shape; it may be omitted only when self has one element
        (then L = self and gy = 1). ``hook``, if given, is called as ``hook(f, gy)`` in place of
        ``f.backward(gy)`` for every function f, and must return what that call returns: a way
        to watch (or time) each step of backpropagation.
        """
        if not self.requires_grad:
            raise ValueError("backward() was called on a tensor that does not require a gradient "
                             "(no input of the ops that made it has requires_grad=True)")
        gy = self._initial_gradient(gy)
        if self.creator is None:
            _accumulate(self, gy)
            return
        pending = {self.creator: gy}             # function -> dL/d(its output), summed so far
        heap = [(-self.generation, -self.creator.order, self.creator)]
        while heap:
            _, _, f = heapq.heappop(heap)
            gy = pending.pop(f)
            gxs = f.backward(gy) if hook is None else hook(f, gy)
            del gy                                # freed before any sum below allocates
            for x, gx in zip(f.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.shape:           # a bug in that op's backward: say where
                    raise ValueError(f"{f.name}.backward returned a gradient of shape {gx.shape} "
                                     f"for an input of shape {x.shape}")
                if x.creator is None:
                    _accumulate(x, gx)
                elif x.creator in pending:
                    pending[x.creator] = pending[x.creator] + gx
                else:
                    pending[x.creator] = gx
                    heapq.heappush(heap, (-x.generation, -x.creator.order, x.creator))

    def _initial_gradient(self, gy):
        xp = get_array_module(self.data)
        if gy is None:
            if self.size != 1:
                raise ValueError(f"backward() on a tensor of shape {self.shape} needs gy, the "
                                 "gradient of the loss with respect to it (only a one-element "
                                 "tensor may omit it)")
            return xp.ones_like(self.data)
        gy = gy.data if isinstance(gy, Tensor) else gy
        gy = xp.asarray(gy, dtype=self.dtype)
        if gy.shape != self.shape:
            raise ValueError(f"backward(): gy has shape {gy.shape} but the tensor has shape "
                             f"{self.shape}; they must match")
        return gy

    # -- operators (the ops themselves live in arith.py) ----------------------------------
    def __add__(self, other):
        return _arith().add(self, other)

    def __radd__(self, other):
        return _arith().add(other, self)

    def __sub__(self, other):
        return _arith().sub(self, other)

    def __rsub__(self, other):
        return _arith().sub(other, self)

    def __mul__(self, other):
        return _arith().mul(self, other)

    def __rmul__(self, other):
        return _arith().mul(other, self)

    def __truediv__(self, other):
        return _arith().div(self, other)

    def __rtruediv__(self, other):
        return _arith().div(other, self)

    def __neg__(self):
        return _arith().neg(self)

    def __pow__(self, exponent):
        return _arith().power(self, exponent)

    def __matmul__(self, other):
        return _arith().matmul(self, other)

    def __rmatmul__(self, other):
        return _arith().matmul(other, self)

    def sum(self, axis=None, keepdims=False):
        return _arith().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _arith().mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return _arith().reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _arith().transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    @property
    def T(self):
        return self.transpose()


def _arith():
    """The ops module: arith.py imports this file, so it is imported here, at first use."""
    from . import arith
    return arith


def _accumulate(leaf, gx):
    """leaf.grad += gx, in the leaf's dtype, never writing into an array backward may share."""
    if leaf.grad is None:
        leaf.grad = gx.astype(leaf.dtype)         # astype copies; float64 constants never upcast
    else:
        leaf.grad = leaf.grad + gx.astype(leaf.dtype, copy=False)


def as_tensor(x, like=None):
    """x as a Tensor. Numbers become constant tensors with ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        return x
    if like is not None and np.isscalar(x):
        xp = get_array_module(like.data)
        return Tensor(xp.asarray(x, dtype=like.dtype))
    return Tensor(x)


_recorded = itertools.count()   # numbers recorded functions, so backward's order never varies


class Edge:
    """What backward needs of a non-leaf input: the function that made it, its generation, shape.

    Functions keep an Edge instead of the Tensor, so the Tensor's array is not kept alive by the
    graph (see Memory above). A leaf input is kept as the Tensor itself: its ``.grad`` is written.
    """

    __slots__ = ("creator", "generation", "shape")
    requires_grad = True            # a non-leaf is in the graph only because it requires one

    def __init__(self, x):
        self.creator, self.generation, self.shape = x.creator, x.generation, x.shape


class Function:
    """One op: ``forward`` on arrays, ``backward`` on arrays, and the graph bookkeeping.

    Subclasses implement ``forward(self, *xs) -> y`` and ``backward(self, gy) -> (gx1, ...)``,
    one entry per input (None where ``self.needs_grad[i]`` is False: skip that work). Forward may
    keep on ``self`` what backward needs, and only when ``self.recording`` is True. Backward
    never writes into ``gy``. Every function here has exactly one output. ``self.inputs`` holds
    leaf Tensors and ``Edge`` records of the other inputs.
    """

    def __call__(self, *inputs):
        first = next((x for x in inputs if isinstance(x, Tensor)), None)
        xs = [as_tensor(x, like=first) for x in inputs]
        try:
            get_array_module(*(x.data for x in xs))
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc} (input shapes {[x.shape for x in xs]})") from None
        self.needs_grad = tuple(x.requires_grad for x in xs)
        self.recording = any(self.needs_grad)
        y = Tensor(self.forward(*(x.data for x in xs)))
        if self.recording:
            self.inputs = [x if x.creator is None else Edge(x) for x in xs]
            self.generation = max(x.generation for x in xs)
            self.order = next(_recorded)        # ties in generation: the later-recorded first
            y.requires_grad = True
            y.creator = self
            y.generation = self.generation + 1
        return y

    @property
    def name(self):
        return type(self).__name__

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError
