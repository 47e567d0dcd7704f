"""Tensor and backpropagation: order, accumulation, depth, frozen inputs, dtypes and devices."""
import numpy as np
import pytest

import miniautograd as ag


class Spy(ag.Function):
    """y = a * b that records, at each backward, which inputs it was told need a gradient."""

    calls = []

    def forward(self, a, b):
        if self.recording:
            self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        Spy.calls.append(self.needs_grad)
        return (gy * self.b if self.needs_grad[0] else None,
                gy * self.a if self.needs_grad[1] else None)


def fake_cupy_array(shape=(2,)):
    """An object that backend.is_cupy_array takes for a cupy.ndarray (no CuPy needed)."""
    fake = type("ndarray", (), {"__module__": "cupy._core.core", "shape": shape,
                                "dtype": np.dtype(np.float32), "ndim": len(shape)})
    return fake()


# -- graph and backpropagation -------------------------------------------------------------

def test_diamond_graph_accumulates_both_paths():
    x = ag.Tensor(np.array([1.5, -2.0, 3.0]), requires_grad=True)
    a = x * x                                   # da/dx = 2x
    b = 3.0 * x                                 # db/dx = 3
    y = (a + b).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)


def test_diamond_with_a_shared_intermediate_is_visited_once():
    x = ag.Tensor(np.array([0.5, 2.0]), requires_grad=True)
    h = Spy()(x, x)                             # h = x^2, feeds both branches
    y = (h * 2.0 + h * h).sum()                 # dy/dh = 2 + 2h
    Spy.calls.clear()
    y.backward()
    assert len(Spy.calls) == 1                  # h's creator ran once, with its gy complete
    np.testing.assert_allclose(x.grad, (2 + 2 * x.data ** 2) * 2 * x.data)


def test_gradients_accumulate_over_backward_calls():
    x = ag.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_deep_chain_backprops_without_recursion_error():
    x = ag.Tensor(np.array([1.0, -1.0]), requires_grad=True)
    y = x
    for _ in range(3000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    assert y.generation == 3000


def test_grad_only_on_leaves_that_require_it():
    x = ag.Tensor(np.ones(3), requires_grad=True)
    c = ag.Tensor(np.full(3, 2.0))
    h = x * c
    (h * h).sum().backward()
    assert x.grad is not None and c.grad is None and h.grad is None


def test_frozen_input_gets_no_gradient_work():
    x = ag.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    w = ag.Tensor(np.array([3.0, 4.0]))         # frozen, like a pretrained weight
    Spy.calls.clear()
    Spy()(x, w).sum().backward()
    assert Spy.calls == [(True, False)]
    np.testing.assert_array_equal(x.grad, w.data)
    assert w.grad is None


def test_no_graph_without_gradients():
    y = Spy()(ag.Tensor(np.ones(2)), ag.Tensor(np.ones(2)))
    assert y.creator is None and not y.requires_grad
    with pytest.raises(ValueError, match="does not require a gradient"):
        y.backward()


def test_backward_on_non_scalar_needs_gy():
    y = ag.Tensor(np.ones((2, 3)), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        y.backward()


def test_backward_refuses_gy_of_the_wrong_shape():
    x = ag.Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones((3, 2)))


def test_backward_with_gy_on_a_non_scalar():
    x = ag.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, -6.0])


def test_backward_of_a_leaf_is_gy():
    x = ag.Tensor(np.array(2.0), requires_grad=True)
    x.backward()
    assert x.grad == 1.0


def test_a_backward_returning_the_wrong_shape_is_named():
    class Broken(ag.Function):
        def forward(self, x):
            return x.sum()

        def backward(self, gy):
            return (gy,)                        # should be broadcast to x's shape

    x = ag.Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"Broken.backward.*\(\).*\(2, 3\)"):
        Broken()(x).backward()


# -- dtypes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.uint16, np.float16])
def test_non_float_data_becomes_float32(dtype):
    assert ag.Tensor(np.ones(3, dtype=dtype)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_are_kept(dtype):
    a = np.ones(3, dtype=dtype)
    t = ag.Tensor(a)
    assert t.dtype == dtype and t.data is a


def test_python_numbers_and_lists_become_float32():
    assert ag.Tensor(3).dtype == np.float32
    assert ag.Tensor([[1, 2], [3, 4]]).shape == (2, 2)


@pytest.mark.parametrize("data", [np.ones(2, dtype=np.complex64), np.array(["a"])])
def test_complex_and_other_data_are_refused(data):
    with pytest.raises(TypeError, match="real numbers"):
        ag.Tensor(data)


@pytest.mark.parametrize("scalar", [2.0, 2, np.float64(2.0)])
def test_a_scalar_constant_keeps_float32(scalar):
    x = ag.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    for y in (x * scalar, scalar * x, x + scalar, scalar - x, x / scalar, scalar / x, x ** scalar):
        assert y.dtype == np.float32
    (x * scalar).sum().backward()
    assert x.grad.dtype == np.float32


def test_grad_has_the_leaf_dtype_even_with_float64_constants():
    x = ag.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (x * np.full(3, 2.0)).sum().backward()      # the product is float64
    assert x.grad.dtype == np.float32


# -- devices ----------------------------------------------------------------------------------

def test_mixing_numpy_and_cupy_arrays_names_the_op():
    x = ag.Tensor(np.ones(2, dtype=np.float32))
    with pytest.raises(TypeError, match=r"^Add: .*mixed.*\(2,\)"):
        ag.add(x, fake_cupy_array())
    with pytest.raises(TypeError, match=r"^MatMul: "):
        ag.matmul(ag.Tensor(np.ones((2, 2))), fake_cupy_array((2, 2)))


def test_tensor_basics():
    t = ag.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="t")
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3), 2, 6, 2)
    assert "device=cpu" in repr(t) and "requires_grad=True" in repr(t)
    assert t.to_cpu().requires_grad and t.to_cpu().name == "t"
    assert ag.Tensor(np.array([[4.5]])).item() == 4.5
    with pytest.raises(ValueError, match=r"one element.*\(2, 3\)"):
        t.item()


@pytest.mark.gpu
def test_gpu_round_trip():
    if not ag.gpu_available():
        pytest.skip("CuPy with a CUDA device is not available")
    t = ag.Tensor(np.arange(3.0, dtype=np.float32), requires_grad=True).to_gpu()
    (t * t).sum().backward()
    assert "device=gpu" in repr(t)
    np.testing.assert_array_equal(ag.to_cpu(t.grad), [0.0, 2.0, 4.0])


def test_the_graph_does_not_keep_intermediate_outputs_alive():
    """Functions hold Edges, not Tensors, for non-leaf inputs: dropped outputs are freed."""
    import gc
    import weakref
    x = ag.Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    hidden = x * 3.0
    watch = weakref.ref(hidden)
    y = ag.relu(hidden + 1.0).sum()
    del hidden
    gc.collect()
    assert watch() is None
    y.backward()
    np.testing.assert_allclose(x.grad, 3.0 * (x.data * 3.0 + 1.0 > 0))


class Copy(ag.Function):
    """y = x, its gradient a fresh copy of gy: one new array per step, nothing kept."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return (gy.copy(),)


class Join(ag.Function):
    """L = sum(a) + sum(b), its gradients two fresh arrays of ones."""

    def forward(self, a, b):
        self.shape = a.shape
        return np.asarray(a.sum() + b.sum())

    def backward(self, gy):
        return np.full(self.shape, float(gy)), np.full(self.shape, float(gy))


def test_a_gy_is_freed_before_the_sum_its_results_join():
    """h feeds two copies: when the second one's gradient reaches h, three arrays of h's size are
    alive (the pending sum, the new gradient, their sum), not four: its gy is already freed.
    (At 512 px this took 56 MiB off a style-transfer iteration's peak.)"""
    from traced import traced_peak
    n = 1 << 20                                          # 8 MiB per float64 array
    h = Copy()(ag.Tensor(np.zeros(n), requires_grad=True))
    loss = Join()(Copy()(h), Copy()(h))
    _, peak = traced_peak(loss.backward)
    assert 3 * 8 * n <= peak < 3.5 * 8 * n


def test_backward_hook_sees_every_function_once_in_heap_order():
    x = ag.Tensor(np.arange(1.0, 4.0), requires_grad=True)
    a, b = x * 2.0, x * x
    y = (a + b).sum()
    seen = []

    def hook(f, gy):
        seen.append(f.name)
        return f.backward(gy)

    y.backward(hook=hook)
    assert seen[:2] == ["Sum", "Add"] and sorted(seen[2:]) == ["Mul", "Mul"]
    np.testing.assert_allclose(x.grad, 2.0 + 2.0 * x.data)
