"""relu, gram, sum_squared_error, total_variation: forward against loops, backward against
finite differences (float64, random gy, non-square shapes), and what each keeps for backward."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import miniautograd as ag
from miniautograd.activation import ReLU
from miniautograd.gram import Gram
from miniautograd.reductions import SumSquaredError, TotalVariation, sum_of_squares


def gram_naive(x):
    """G[n, c, d] = sum over pixels (h, w) of x[n, c, h, w] * x[n, d, h, w], by loops."""
    N, C, H, W = x.shape
    G = np.zeros((N, C, C))
    for n in range(N):
        for c in range(C):
            for d in range(C):
                G[n, c, d] = sum(x[n, c, h, w] * x[n, d, h, w] for h in range(H) for w in range(W))
    return G


def total_variation_naive(x):
    """Sum over every pixel of (below - it)^2 and (right - it)^2, where those neighbours exist."""
    N, C, H, W = x.shape
    total = 0.0
    for n, c, h, w in np.ndindex(N, C, H, W):
        if h + 1 < H:
            total += (x[n, c, h + 1, w] - x[n, c, h, w]) ** 2
        if w + 1 < W:
            total += (x[n, c, h, w + 1] - x[n, c, h, w]) ** 2
    return total


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(*shape, seed=0):
    """Entries with |x| in [0.1, 1.1): finite differences never straddle relu's kink."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], shape) * (0.1 + rng.random(shape))


# -- relu -------------------------------------------------------------------------------------

def test_relu_forward_matches_numpy(xp):
    x = normal(3, 4, 5).astype(np.float32)
    y = ag.relu(ag.Tensor(xp.asarray(x)))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(ag.to_cpu(y.data), np.maximum(x, 0))


def test_relu_backward_passes_gy_where_x_is_positive(xp):
    x = ag.Tensor(xp.asarray(np.array([[-2.0, 0.0, 3.0], [1.0, -0.5, 0.25]])), requires_grad=True)
    gy = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ag.relu(x).backward(xp.asarray(gy))
    np.testing.assert_array_equal(ag.to_cpu(x.grad), [[0, 0, 3], [4, 0, 6]])   # 0 at x == 0


def test_relu_gradcheck():
    assert ag.gradcheck(ag.relu, away_from_zero(2, 3, 4, 5))


def test_relu_keeps_only_a_boolean_mask():
    f = ReLU()
    f(ag.Tensor(normal(3, 4), requires_grad=True))
    kept = {k: v for k, v in vars(f).items() if isinstance(v, np.ndarray)}
    assert list(kept) == ["mask"] and kept["mask"].dtype == bool


def test_relu_keeps_nothing_without_gradients():
    f = ReLU()
    f(ag.Tensor(normal(3, 4)))
    assert not hasattr(f, "mask")


@pytest.mark.parametrize("contiguous", [True, False])
def test_relu_forward_in_bands_equals_one_pass(monkeypatch, contiguous):
    """Bands of 7 elements (a last, partial one too) or a strided x: the same y and mask."""
    from miniautograd import activation
    monkeypatch.setattr(activation, "BAND_ELEMENTS", 7)
    x = normal(3, 4, 5) if contiguous else normal(3, 4, 10)[:, :, ::2]
    y, mask = activation.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(mask, x > 0)


def test_relu_in_place_writes_over_x_and_gives_the_same_values_and_gradient():
    x = away_from_zero(2, 3, 4)
    gy = normal(2, 3, 4)
    expected, expected_grad = np.maximum(x, 0), gy * (x > 0)
    h = ag.Tensor(x.copy(), requires_grad=True) * 1.0      # an op's output, as in a network
    y = ag.relu(h, inplace=True)
    assert y.data is h.data                               # no new array: y is written over x
    np.testing.assert_array_equal(y.data, expected)
    leaf = h.creator.inputs[0]
    y.backward(gy)
    np.testing.assert_array_equal(leaf.grad, expected_grad)


# -- gram -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 5, 2, 3), (2, 1, 3, 1)])
def test_gram_forward_matches_loops(shape):
    x = normal(*shape)
    G = ag.gram(x)
    assert G.shape == (shape[0], shape[1], shape[1])
    np.testing.assert_allclose(G.data, gram_naive(x), rtol=1e-12)


def test_gram_is_unnormalised_and_symmetric():
    x = np.ones((1, 2, 3, 5))
    np.testing.assert_array_equal(ag.gram(x).data, np.full((1, 2, 2), 15.0))   # H*W, not 1
    G = ag.gram(normal(2, 4, 3, 5)).data
    np.testing.assert_allclose(G, G.swapaxes(1, 2))


def test_gram_gradcheck():
    assert ag.gradcheck(ag.gram, normal(2, 3, 4, 5))


def test_gram_backward_is_symmetrised_gy_times_F():
    x, gG = normal(2, 3, 4, 5), normal(2, 3, 3, seed=1)
    t = ag.Tensor(x, requires_grad=True)
    ag.gram(t).backward(gG)
    F = x.reshape(2, 3, 20)
    np.testing.assert_allclose(t.grad, ((gG + gG.swapaxes(1, 2)) @ F).reshape(x.shape))


def test_gram_on_device_matches_numpy(xp):
    x = normal(2, 3, 4, 5).astype(np.float32)
    t = ag.Tensor(xp.asarray(x), requires_grad=True)
    G = ag.gram(t)
    G.backward(xp.ones((2, 3, 3), dtype=np.float32))
    assert G.dtype == np.float32 and t.grad.dtype == np.float32
    np.testing.assert_allclose(ag.to_cpu(G.data), gram_naive(x), rtol=1e-5)
    np.testing.assert_allclose(ag.to_cpu(t.grad), 2 * x.sum(axis=1, keepdims=True).repeat(3, 1),
                               rtol=1e-5)


def test_gram_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"gram.*\(3, 4, 5\)"):
        ag.gram(normal(3, 4, 5))


def test_gram_keeps_only_F():
    f = Gram()
    x = ag.Tensor(normal(2, 3, 4, 5), requires_grad=True)
    f(x)
    assert np.shares_memory(f.F, x.data)           # a view, no copy of the feature map


# -- sum_squared_error --------------------------------------------------------------------------

def test_sum_squared_error_forward(xp):
    x, t = normal(2, 3, 4).astype(np.float32), normal(2, 3, 4, seed=1).astype(np.float32)
    loss = ag.sum_squared_error(ag.Tensor(xp.asarray(x)), xp.asarray(t))
    assert loss.shape == () and loss.dtype == np.float32
    assert loss.item() == pytest.approx(float(((x - t) ** 2).sum()), rel=1e-5)


def test_float32_losses_are_summed_in_float64(xp):
    """On 2M float32 elements the sum is the float64 one up to the final rounding to float32
    (the float32 dot product it replaced was 5.7e-5 off on 8M elements); float64 stays float64."""
    d = normal(2, 1024, 1024).astype(np.float32)                     # 2M elements
    exact = float((d.astype(np.float64) ** 2).sum())
    for total in (sum_of_squares(xp.asarray(d)),
                  ag.sum_squared_error(ag.Tensor(xp.asarray(d)), xp.zeros_like(xp.asarray(d))).data,
                  ag.total_variation(ag.Tensor(xp.asarray(d.reshape(2, 1, 1024, 1024)))).data):
        assert total.shape == () and total.dtype == np.float32
    # rel 1.2e-7: one float32 ulp (2^-23), the final rounding; the float64 sum itself is exact
    # to ~1e-13 on any CPU (vdot in float32 was 8e-6 off here)
    assert float(sum_of_squares(xp.asarray(d))) == pytest.approx(exact, rel=1.2e-7)
    assert sum_of_squares(xp.asarray(d.astype(np.float64))).dtype == np.float64


def test_sum_squared_error_gradcheck_both_inputs():
    assert ag.gradcheck(ag.sum_squared_error, normal(2, 3, 4), normal(2, 3, 4, seed=1))


def test_sum_squared_error_constant_target_gets_no_gradient():
    x, t = ag.Tensor(normal(3, 5), requires_grad=True), ag.Tensor(normal(3, 5, seed=1))
    ag.sum_squared_error(x, t).backward()
    np.testing.assert_allclose(x.grad, 2 * (x.data - t.data))
    assert t.grad is None


def test_sum_squared_error_computes_only_needed_gradients():
    f = SumSquaredError()
    f(ag.Tensor(normal(3, 5), requires_grad=True), normal(3, 5, seed=1))
    gx, gt = f.backward(np.array(1.5))
    assert gt is None and gx.shape == (3, 5)


def test_sum_squared_error_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"sum_squared_error.*\(1, 3, 3\).*\(2, 3, 3\)"):
        ag.sum_squared_error(normal(1, 3, 3), normal(2, 3, 3))


# -- total_variation ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 1, 6), (1, 2, 4, 1), (1, 1, 1, 1)])
def test_total_variation_forward_matches_loops(shape):
    x = normal(*shape)
    assert ag.total_variation(x).item() == pytest.approx(total_variation_naive(x), rel=1e-12)


def test_total_variation_is_unnormalised():
    x = np.zeros((1, 1, 3, 4))
    x[0, 0, 1, 1] = 1.0                            # 4 neighbours, each difference 1
    assert ag.total_variation(x).item() == 4.0


def test_total_variation_gradcheck():
    assert ag.gradcheck(ag.total_variation, normal(2, 3, 5, 4))
    assert ag.gradcheck(ag.total_variation, normal(1, 2, 1, 3))


def test_total_variation_on_device(xp):
    x = normal(1, 3, 6, 5).astype(np.float32)
    t = ag.Tensor(xp.asarray(x), requires_grad=True)
    loss = ag.total_variation(t)
    loss.backward()
    assert loss.dtype == np.float32 and t.grad.dtype == np.float32
    assert loss.item() == pytest.approx(total_variation_naive(x), rel=1e-5)
    assert float(ag.to_cpu(t.grad).sum()) == pytest.approx(0.0, abs=1e-4)   # shift invariance


def test_total_variation_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"total_variation.*\(4, 5\)"):
        ag.total_variation(normal(4, 5))


def test_total_variation_is_one_graph_node():
    t = ag.Tensor(normal(1, 2, 3, 4), requires_grad=True)
    loss = ag.total_variation(t)
    assert isinstance(loss.creator, TotalVariation) and loss.creator.inputs == [t]


@settings(max_examples=15, deadline=None)
@given(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
       st.integers(0, 2 ** 16))
def test_gram_and_total_variation_gradcheck_on_random_shapes(shape, seed):
    x = normal(*shape, seed=seed)
    assert ag.gradcheck(ag.gram, x)
    assert ag.gradcheck(ag.total_variation, x)
