"""avg_pool2d and max_pool2d: the loop oracles, finite differences, padding rules, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import miniautograd as ag
from miniautograd.pooling import avg_pool2d, avg_pool2d_forward, avg_pool2d_grad_input, max_pool2d
from naive import avg_pool_naive, max_pool_grad_naive, max_pool_naive
from traced import traced_peak, ufunc_slack

# (x shape, kernel, stride, pad as passed; then kernel, stride, pad (top, bottom, left, right))
CASES = [
    ((1, 1, 4, 4), 2, None, 0, (2, 2), (2, 2), (0, 0, 0, 0)),
    ((2, 3, 7, 5), 2, None, 0, (2, 2), (2, 2), (0, 0, 0, 0)),            # odd sizes: floor
    ((2, 3, 7, 6), (3, 2), None, 0, (3, 2), (3, 2), (0, 0, 0, 0)),
    ((2, 3, 7, 6), 3, 2, 1, (3, 3), (2, 2), (1, 1, 1, 1)),                # overlapping windows
    ((1, 2, 6, 9), (2, 3), (1, 2), (1, 2), (2, 3), (1, 2), (1, 1, 2, 2)),
    ((3, 1, 5, 8), (3, 2), (2, 1), (0, 1, 1, 0), (3, 2), (2, 1), (0, 1, 1, 0)),
    ((1, 2, 3, 3), 3, 1, 0, (3, 3), (1, 1), (0, 0, 0, 0)),                # one output pixel
]


def distinct(rng, *shape):
    """All-distinct values 0.1 apart, shuffled: max pooling's choice is unique and stable."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("x_shape, kernel, stride, pad, k2, s2, pad4", CASES)
def test_avg_pool_forward_matches_loop_oracle(rng, x_shape, kernel, stride, pad, k2, s2, pad4):
    x = rng.standard_normal(x_shape)
    y = avg_pool2d(x, kernel, stride=stride, pad=pad)
    np.testing.assert_allclose(y.data, avg_pool_naive(x, k2, s2, pad4), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("x_shape, kernel, stride, pad, k2, s2, pad4", CASES)
def test_max_pool_forward_and_backward_match_loop_oracles(rng, x_shape, kernel, stride, pad,
                                                          k2, s2, pad4):
    x = ag.Tensor(rng.standard_normal(x_shape), requires_grad=True)
    y = max_pool2d(x, kernel, stride=stride, pad=pad)
    np.testing.assert_array_equal(y.data, max_pool_naive(x.data, k2, s2, pad4))
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    np.testing.assert_allclose(x.grad, max_pool_grad_naive(x.data, gy, k2, s2, pad4), rtol=1e-12)


@pytest.mark.parametrize("x_shape, kernel, stride, pad, k2, s2, pad4", CASES[1:6])
def test_gradients_match_finite_differences(rng, x_shape, kernel, stride, pad, k2, s2, pad4):
    inputs = ((avg_pool2d, rng.standard_normal(x_shape)), (max_pool2d, distinct(rng, *x_shape)))
    for pool, x in inputs:
        result = ag.gradcheck(lambda x: pool(x, kernel, stride=stride, pad=pad), x)
        assert result.ok, (pool.__name__, result.errors)


@pytest.mark.parametrize("x_shape, kernel, pad, fast", [
    ((2, 5, 8, 6), (2, 2), (0, 0, 0, 0), True), ((1, 3, 7, 9), (2, 2), (0, 0, 0, 0), True),
    ((2, 4, 9, 8), (3, 2), (0, 0, 0, 0), True), ((1, 6, 5, 4), (1, 2), (0, 0, 0, 0), True),
    ((1, 3, 8, 6), (2, 2), (0, 1, 0, 1), True),      # VGG's pad on even sizes: never read
    ((1, 3, 7, 6), (2, 2), (0, 1, 0, 1), False),     # odd: the last window reads the pad
    ((1, 3, 8, 6), (2, 2), (1, 0, 0, 0), False)])
@pytest.mark.parametrize("band", [1, 10 ** 6])          # one channel per band, or all at once
def test_average_pool_fast_path_agrees_with_the_offset_loop(rng, monkeypatch, x_shape, kernel,
                                                           pad, fast, band):
    """Windows that tile x (stride = kernel, no pad read) take the *_blocks functions; leftover
    rows and columns (7 = 3*2 + 1) get no gradient. Forward sums in another order: a rounding
    apart."""
    from miniautograd import pooling as P
    monkeypatch.setattr(P, "BAND_ELEMENTS", band)
    x = rng.standard_normal(x_shape)
    assert P.tiles_the_input(x_shape, kernel, kernel, pad,
                             P.pool_args(x_shape, kernel, None, pad, op="t")[3]) == fast
    y = P.avg_pool2d_forward(x, kernel, None, pad)
    np.testing.assert_allclose(y, P.avg_pool2d_forward_offsets(x, kernel, kernel, pad),
                               rtol=1e-15, atol=1e-15)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(P.avg_pool2d_grad_input(gy, x_shape, kernel, None, pad),
                                  P.avg_pool2d_grad_input_offsets(gy, x_shape, kernel, kernel,
                                                                  pad))


def test_stride_defaults_to_the_kernel(rng):
    x = rng.standard_normal((2, 3, 9, 7))
    for pool in (avg_pool2d, max_pool2d):
        y = pool(x, (3, 2))
        assert y.shape == (2, 3, 3, 3)
        np.testing.assert_array_equal(y.data, pool(x, (3, 2), stride=(3, 2)).data)


def test_avg_pool_counts_the_zero_padding():
    """An all-ones input: a corner 3x3 window with pad 1 holds 4 ones and 5 padded zeros."""
    y = avg_pool2d(np.ones((1, 1, 4, 5)), 3, stride=1, pad=1).data
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)        # divided by KH*KW = 9, not by 4
    assert y[0, 0, 0, 1] == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)


def test_max_pool_never_chooses_the_padding(rng):
    """All entries negative: a zero-padded max would give 0 at the border; -inf gives the data."""
    x = ag.Tensor(-1.0 - rng.random((2, 2, 5, 4)), requires_grad=True)
    y = max_pool2d(x, 3, stride=2, pad=(2, 1))
    assert np.all(y.data < -1.0 + 1e-12) and np.all(np.isfinite(y.data))
    y.backward(np.ones(y.shape))
    assert x.grad.sum() == pytest.approx(y.size)        # every window's gy reached a real pixel


def test_max_pool_ties_go_to_the_first_entry():
    x = ag.Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    max_pool2d(x, 2).backward(np.arange(1.0, 5.0).reshape(1, 1, 2, 2))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = [[1, 2], [3, 4]]               # each window's top-left entry
    np.testing.assert_array_equal(x.grad[0, 0], expected)


def test_pools_keep_only_what_backward_needs(rng):
    x = ag.Tensor(distinct(rng, 2, 3, 6, 6), requires_grad=True)
    y_max, y_avg = max_pool2d(x, 2), avg_pool2d(x, 2)
    kept = [v for v in vars(y_max.creator).values() if hasattr(v, "dtype")]
    assert len(kept) == 1 and kept[0].shape == y_max.shape and kept[0].dtype == np.uint8
    assert not [v for v in vars(y_avg.creator).values() if hasattr(v, "dtype")]
    assert y_avg.creator.x_shape == x.shape


def test_float32_stays_float32(rng):
    x = ag.Tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32), requires_grad=True)
    for pool in (avg_pool2d, max_pool2d):
        y = pool(x, 2)
        y.backward(np.ones(y.shape, np.float32))
        assert y.dtype == np.float32 and x.grad.dtype == np.float32


@st.composite
def pool_problems(draw):
    """Random pooling geometry: non-square kernels and strides, each pad side < the kernel."""
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, KH - 1)), draw(st.integers(0, KH - 1)),
           draw(st.integers(0, KW - 1)), draw(st.integers(0, KW - 1)))
    H = draw(st.integers(max(1, KH - pad[0] - pad[1]), 9))   # the padded input holds the kernel
    W = draw(st.integers(max(1, KW - pad[2] - pad[3]), 9))
    return (N, C, H, W), (KH, KW), stride, pad


@settings(max_examples=150, deadline=None)
@given(pool_problems(), st.integers(0, 2**32 - 1))
def test_hypothesis_both_pools_and_their_gradients(problem, seed):
    """Forwards against the oracles; max backward against its oracle; avg backward by adjointness.

    avg_pool2d is linear, so <gx(gy), dx> = <gy, avg_pool(dx)> exactly for any gy and dx.
    """
    x_shape, kernel, stride, pad = problem
    rng = np.random.default_rng(seed)
    x = ag.Tensor(distinct(rng, *x_shape), requires_grad=True)
    y = max_pool2d(x, kernel, stride=stride, pad=pad)
    np.testing.assert_array_equal(y.data, max_pool_naive(x.data, kernel, stride, pad))
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    np.testing.assert_allclose(x.grad, max_pool_grad_naive(x.data, gy, kernel, stride, pad),
                               rtol=1e-12)
    z = avg_pool2d_forward(x.data, kernel, stride, pad)
    np.testing.assert_allclose(z, avg_pool_naive(x.data, kernel, stride, pad), rtol=1e-12,
                               atol=1e-12)
    dx = rng.standard_normal(x_shape)
    gx = avg_pool2d_grad_input(gy, x_shape, kernel, stride, pad)
    pooled_dx = avg_pool_naive(dx, kernel, stride, pad)
    np.testing.assert_allclose(np.sum(gx * dx), np.sum(gy * pooled_dx), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool", [avg_pool2d, max_pool2d])
@pytest.mark.parametrize("x_shape, kernel, kwargs, message", [
    ((1, 2, 2, 5), 3, {}, r"the kernel 3x3 is larger than the padded input 2x5"),
    ((1, 2, 2, 5), (3, 1), {"pad": (0, 0, 0, 0)}, r"larger than the padded input 2x5"),
    ((2, 5, 5), 2, {}, r"the input must have shape \(N, C, H, W\); got shape \(2, 5, 5\)"),
    ((1, 2, 5, 5), 0, {}, r"kernel must be an int >= 1"),
    ((1, 2, 5, 5), (2, 2, 2), {}, r"kernel must be"),
    ((1, 2, 5, 5), 2.0, {}, r"kernel must be"),
    ((1, 2, 5, 5), 2, {"stride": 0}, r"stride must be an int >= 1"),
    ((1, 2, 5, 5), 2, {"stride": (1,)}, r"stride must be"),
    ((1, 2, 5, 5), 2, {"pad": (1, 1, 1)}, r"pad must be"),
    ((1, 2, 5, 5), 2, {"pad": -1}, r"pad must be"),
])
def test_errors_name_the_op_and_the_shapes(pool, x_shape, kernel, kwargs, message):
    with pytest.raises(ValueError, match=rf"{pool.__name__}: .*{message}"):
        pool(np.zeros(x_shape), kernel, **kwargs)


def test_max_pool_refuses_a_pad_as_large_as_the_kernel():
    with pytest.raises(ValueError, match=r"max_pool2d: every pad must be smaller than the kernel "
                                         r"2x3.*\(0, 2, 0, 0\)"):
        max_pool2d(np.zeros((1, 1, 4, 4)), (2, 3), pad=(0, 2, 0, 0))
    avg_pool2d(np.zeros((1, 1, 4, 4)), (2, 3), pad=(0, 2, 0, 0))   # zeros that count: allowed


def test_backend(xp):
    """The same code on NumPy and CuPy: both pools and their gradients against the oracles."""
    rng = np.random.default_rng(1)
    x = distinct(rng, 2, 3, 7, 8)
    gy = rng.standard_normal((2, 3, 4, 5))
    for pool, naive in ((avg_pool2d, avg_pool_naive), (max_pool2d, max_pool_naive)):
        xt = ag.Tensor(xp.asarray(x), requires_grad=True)
        y = pool(xt, 3, stride=(2, 2), pad=(1, 1, 1, 2))
        np.testing.assert_allclose(y.numpy(), naive(x, (3, 3), (2, 2), (1, 1, 1, 2)), rtol=1e-12)
        y.backward(xp.asarray(gy))
        assert ag.get_array_module(xt.grad) is xp
    np.testing.assert_allclose(ag.to_cpu(xt.grad),
                               max_pool_grad_naive(x, gy, (3, 3), (2, 2), (1, 1, 1, 2)), rtol=1e-12)


SLACK = ufunc_slack(8)   # float64 arrays
ONE_BYTE = {"argmax", "larger", "mask"}


def reported_bytes(sizes):
    return sum(n * (1 if name in ONE_BYTE else 8) for name, n in sizes.items())


@pytest.mark.parametrize("shape, kernel, stride, pad", [
    ((2, 8, 120, 90), 2, 2, (0, 1, 0, 1)), ((1, 8, 99, 123), (3, 2), (2, 1), 1),
    ((1, 16, 128, 96), 2, None, 0)])        # every float buffer larger than SLACK
def test_pools_allocate_what_their_buffers_functions_report(shape, kernel, stride, pad):
    from miniautograd import pooling as P
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    for name in ("avg", "max"):
        forward = getattr(P, f"{name}_pool2d_forward")
        result, peak = traced_peak(lambda: forward(x, kernel, stride, pad))
        sizes = getattr(P, f"{name}_pool2d_forward_buffers")(shape, kernel, stride, pad)
        assert peak == pytest.approx(reported_bytes(sizes), abs=SLACK), name
        y, argmax = result if name == "max" else (result, None)
        gy = rng.standard_normal(y.shape)
        args = (gy, argmax) if name == "max" else (gy,)
        grad = getattr(P, f"{name}_pool2d_grad_input")
        gx, peak = traced_peak(lambda: grad(*args, shape, kernel, stride, pad))
        sizes = getattr(P, f"{name}_pool2d_grad_input_buffers")(shape, kernel, stride, pad)
        assert peak == pytest.approx(reported_bytes(sizes), abs=SLACK), name
