"""Arithmetic ops: forward against NumPy, backward with gradcheck (float64, random gy), errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import miniautograd as ag
from miniautograd.arith import sum_to


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(*shape, seed=0):
    """|x| in [0.5, 1.5): safe denominators."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], shape) * (0.5 + rng.random(shape))


BINARY = [(ag.add, np.add), (ag.sub, np.subtract), (ag.mul, np.multiply), (ag.div, np.divide)]
UNARY = [  # (label, our op, NumPy's, input shape)
    ("neg", ag.neg, np.negative, (3, 4)),
    ("power 3", lambda x: ag.power(x, 3), lambda x: x ** 3, (2, 5)),
    ("sum", ag.sum, np.sum, (3, 4, 2)),
    ("sum axis=1", lambda x: ag.sum(x, axis=1), lambda x: x.sum(axis=1), (3, 4, 2)),
    ("sum axis=(0,2) keepdims", lambda x: ag.sum(x, axis=(0, 2), keepdims=True),
     lambda x: x.sum(axis=(0, 2), keepdims=True), (3, 4, 2)),
    ("sum axis=-1", lambda x: ag.sum(x, axis=-1), lambda x: x.sum(axis=-1), (3, 4, 2)),
    ("mean", ag.mean, np.mean, (3, 5)),
    ("mean axis=0 keepdims", lambda x: ag.mean(x, axis=0, keepdims=True),
     lambda x: x.mean(axis=0, keepdims=True), (3, 4, 2)),
    ("mean axis=(1,2)", lambda x: ag.mean(x, axis=(1, 2)), lambda x: x.mean(axis=(1, 2)),
     (3, 4, 2)),
    ("reshape", lambda x: ag.reshape(x, (5, -1)), lambda x: x.reshape(5, -1), (2, 3, 5)),
    ("transpose", ag.transpose, np.transpose, (2, 3, 5)),
    ("transpose axes", lambda x: ag.transpose(x, (1, 2, 0)), lambda x: x.transpose(1, 2, 0),
     (2, 3, 5)),
    ("transpose negative axes", lambda x: ag.transpose(x, (-1, 0, 1)),
     lambda x: x.transpose(2, 0, 1), (2, 3, 5)),
]
UNARY_IDS = [u[0] for u in UNARY]
BROADCASTS = [((3, 4), (3, 4)), ((3, 1, 5), (4, 1)), ((4, 1), (2, 4, 5)), ((2, 3), ()),
              ((1, 3), (2, 1))]
MATMULS = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 5)), ((3, 4), (2, 4, 5))]


@pytest.mark.parametrize("op, ref", BINARY, ids=["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_binary_forward_matches_numpy(op, ref, shapes, xp):
    a, b = normal(*shapes[0]), away_from_zero(*shapes[1], seed=1)
    y = op(ag.Tensor(xp.asarray(a)), ag.Tensor(xp.asarray(b)))
    np.testing.assert_allclose(ag.to_cpu(y.data), ref(a, b), rtol=1e-12)


@pytest.mark.parametrize("op, ref", BINARY, ids=["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_binary_gradcheck(op, ref, shapes):
    assert ag.gradcheck(op, normal(*shapes[0]), away_from_zero(*shapes[1], seed=1))


@pytest.mark.parametrize("label, op, ref, shape", UNARY, ids=UNARY_IDS)
def test_unary_forward_matches_numpy(label, op, ref, shape, xp):
    x = normal(*shape)
    y = op(ag.Tensor(xp.asarray(x)))
    np.testing.assert_allclose(ag.to_cpu(y.data), ref(x), rtol=1e-12)
    assert y.shape == np.shape(ref(x))


@pytest.mark.parametrize("label, op, ref, shape", UNARY, ids=UNARY_IDS)
def test_unary_gradcheck(label, op, ref, shape):
    assert ag.gradcheck(op, normal(*shape))


@pytest.mark.parametrize("p", [2, 0.5, -1.5])
def test_power_gradcheck_on_positive_inputs(p):
    assert ag.gradcheck(lambda x: ag.power(x, p), np.abs(away_from_zero(3, 4)))


@pytest.mark.parametrize("shapes", MATMULS, ids=str)
def test_matmul_forward_and_gradcheck(shapes, xp):
    a, b = normal(*shapes[0]), normal(*shapes[1], seed=1)
    y = ag.matmul(ag.Tensor(xp.asarray(a)), ag.Tensor(xp.asarray(b)))
    np.testing.assert_allclose(ag.to_cpu(y.data), a @ b, rtol=1e-12)
    if xp is np:
        assert ag.gradcheck(ag.matmul, a, b)


def test_operators_call_the_ops():
    a, b = ag.Tensor(normal(2, 3)), ag.Tensor(away_from_zero(2, 3, seed=1))
    pairs = [(a + b, a.data + b.data), (a - b, a.data - b.data), (a * b, a.data * b.data),
             (a / b, a.data / b.data), (-a, -a.data), (a ** 2, a.data ** 2),
             (a @ b.T, a.data @ b.data.T), (2.0 - a, 2.0 - a.data), (1.0 / b, 1.0 / b.data),
             (a.data @ b.T, a.data @ b.data.T), (a.sum(axis=0), a.data.sum(axis=0)),
             (a.mean(), a.data.mean()), (a.reshape(3, 2), a.data.reshape(3, 2)),
             (a.transpose(1, 0), a.data.T)]
    for y, expected in pairs:
        assert isinstance(y, ag.Tensor)
        np.testing.assert_allclose(y.data, expected, rtol=1e-12)


def test_an_ndarray_on_the_left_gives_a_tensor():
    x = ag.Tensor(normal(3), requires_grad=True)
    y = np.full(3, 2.0) * x
    assert isinstance(y, ag.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("op, name", [(ag.add, "Add"), (ag.sub, "Sub"), (ag.mul, "Mul"),
                                      (ag.div, "Div")])
def test_broadcast_errors_name_the_op_and_shapes(op, name):
    with pytest.raises(ValueError, match=rf"^{name}: shapes \(3, 4\) and \(2, 4\) cannot"):
        op(normal(3, 4), normal(2, 4))


def test_matmul_inner_dimension_mismatch():
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\)"):
        ag.matmul(normal(3, 4), normal(5, 2))


def test_matmul_refuses_1d_and_bad_batches():
    with pytest.raises(ValueError, match=r"matmul: shapes \(4,\)"):
        ag.matmul(normal(4), normal(4, 2))
    with pytest.raises(ValueError, match=r"matmul: the batch axes .*\(2, 3, 4\).*\(3, 4, 5\)"):
        ag.matmul(normal(2, 3, 4), normal(3, 4, 5))


def test_reshape_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"reshape: .*\(2, 3\).*\(4, 2\)"):
        ag.reshape(normal(2, 3), (4, 2))


def test_power_refuses_a_non_number_exponent():
    with pytest.raises(TypeError, match="Power"):
        ag.power(normal(2), np.ones(2))


def test_sum_to_undoes_broadcasting():
    g = normal(2, 3, 4, 5)
    np.testing.assert_allclose(sum_to(g, (3, 1, 5)), g.sum(axis=(0, 2)).reshape(3, 1, 5))
    np.testing.assert_allclose(sum_to(g, ()), g.sum())
    assert sum_to(g, g.shape) is g


@settings(max_examples=25, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       st.sampled_from(BINARY), st.integers(0, 2 ** 16))
def test_binary_gradcheck_on_random_broadcasts(shapes, op_ref, seed):
    (sa, sb), op = shapes.input_shapes, op_ref[0]
    a, b = normal(*sa, seed=seed), away_from_zero(*sb, seed=seed + 1)
    y = op(a, b)
    assert y.shape == shapes.result_shape
    np.testing.assert_allclose(y.data, op_ref[1](a, b), rtol=1e-12)
    assert ag.gradcheck(op, a, b)


@pytest.mark.parametrize("op", [ag.add, ag.sub, ag.mul, ag.div, ag.matmul])
def test_a_constant_operand_gets_no_gradient_work(op, monkeypatch):
    """Every binary op returns None for an input that needs no gradient (Add once did not)."""
    import miniautograd.arith as arith
    summed = []
    real = arith.sum_to
    monkeypatch.setattr(arith, "sum_to", lambda g, shape: summed.append(shape) or real(g, shape))
    rng = np.random.default_rng(0)
    a = ag.Tensor(rng.uniform(1, 2, (4, 4)), requires_grad=True)
    b = rng.uniform(1, 2, (4, 4))
    for x, y, needed in ((a, b, 0), (b, a, 1)):
        summed.clear()
        out = op(x, y)
        grads = out.creator.backward(np.ones(out.shape))
        assert grads[1 - needed] is None and grads[needed].shape == a.shape
        assert summed == [a.shape], summed        # only the needed gradient is computed


@pytest.mark.parametrize("op, kept_for_a, kept_for_b", [
    (ag.mul, {"b"}, {"a"}), (ag.matmul, {"b"}, {"a"}), (ag.div, {"b"}, {"b", "y"})])
def test_ops_keep_only_what_the_needed_gradients_require(op, kept_for_a, kept_for_b):
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(1, 2, (4, 4)) for _ in range(2)]
    for needs, expected in (((True, False), kept_for_a), ((False, True), kept_for_b)):
        a, b = (ag.Tensor(x, requires_grad=r) for x, r in zip(arrays, needs))
        f = op(a, b).creator
        kept = {k for k, v in vars(f).items() if hasattr(v, "shape") and k != "inputs"}
        assert kept == expected, (op, needs, kept)
