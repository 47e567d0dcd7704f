"""Winograd F(2x2, 3x3) (and F(4x4, 3x3) against the oracle), the input gradient as a convolution, conv2d's choice of algorithm, the
kernels kept by the network, and the buffer sizes the ops report."""

import tracemalloc

import numpy as np
import pytest

import miniautograd as ag
from miniautograd import conv_fast
from miniautograd import winograd as wg
from miniautograd import winograd4 as w4
from miniautograd.backend import CHUNK_ELEMENTS
from miniautograd.conv import conv2d_grad_input
from miniautograd.conv_fast import (choose_algorithm, conv2d, grad_input_as_conv,
                                    grad_input_as_conv_buffers)
from naive import conv2d_naive
from traced import traced_peak, ufunc_slack

PADS = [(1, 1, 1, 1), (0, 0, 0, 0), (2, 2, 2, 2), (0, 2, 1, 0), (2, 0, 0, 1), (1, 2, 2, 1)]


def rand(rng, *shape):
    return rng.standard_normal(shape)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_one_dimensional_f23_is_a_correlation(rng):
    """A^T [(K w) * (B^T d)] = the 2 outputs of correlating 4 inputs d with 3 taps w."""
    for _ in range(5):
        d, w = rand(rng, 4), rand(rng, 3)
        expected = [d[0:3] @ w, d[1:4] @ w]
        np.testing.assert_allclose(wg.AT @ ((wg.K @ w) * (wg.BT @ d)), expected, rtol=1e-12)


def test_four_multiplications_instead_of_six():
    """F(2, 3) multiplies 4 transformed pairs for 2 outputs of 3 taps (2 * 3 = 6 directly)."""
    assert wg.BT.shape == (4, 4) and wg.K.shape == (4, 3) and wg.AT.shape == (2, 4)
    assert set(np.unique(wg.BT)) <= {-1, 0, 1} and set(np.unique(wg.AT)) <= {-1, 0, 1}


VARIANTS = {"F(2x2, 3x3)": (wg, wg.transform_kernel, wg.winograd_conv, wg.winograd_grad_input),
            "F(4x4, 3x3)": (w4, w4.transform_kernel, w4.winograd4_conv, w4.winograd4_grad_input)}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("N, C, O, H, W, chunk", [(1, 3, 4, 6, 8, None), (2, 2, 3, 7, 5, 1),
                                                  (1, 4, 2, 13, 11, 600)])
def test_forward_and_input_gradient_match_the_oracle(rng, monkeypatch, variant, pad,
                                                     N, C, O, H, W, chunk):
    """Outputs that are and are not multiples of the tile, every pad side 0..2, N > 1, bands of
    one tile row (chunk=1) and of several (MIN_TILES lowered so that small chunks make bands)."""
    module, transform_kernel, conv, grad_input = VARIANTS[variant]
    monkeypatch.setattr(module, "MIN_TILES", 1)
    x, Wt, b = rand(rng, N, C, H, W), rand(rng, O, C, 3, 3), rand(rng, O)
    U = transform_kernel(Wt, np.float64)
    y = conv(x, U, pad, b, chunk=chunk)
    expected = conv2d_naive(x, Wt, b, (1, 1), pad)
    assert y.shape == expected.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-11)
    gy = rand(rng, *y.shape)
    gx = grad_input(gy, U, pad, chunk=chunk)
    np.testing.assert_allclose(gx, conv2d_grad_input(gy, Wt, x.shape, 1, pad),
                               rtol=1e-11, atol=1e-11)


def test_float32_relative_error_below_1e_5(rng):
    """Against the direct convolution in float64, VGG-like values: max error / max |y|."""
    x = rng.uniform(0, 4, (1, 32, 18, 14)).astype(np.float32)          # post-ReLU features
    W = (rand(rng, 16, 32, 3, 3) * np.sqrt(2 / 288)).astype(np.float32)  # He-normal filters
    y = wg.winograd_conv(x, wg.transform_kernel(W, np.float32), (1, 1, 1, 1))
    exact = conv2d_naive(x.astype(np.float64), W.astype(np.float64), None, (1, 1), (1, 1, 1, 1))
    assert y.dtype == np.float32
    assert np.abs(y - exact).max() / np.abs(exact).max() < 1e-5
    gy = rand(rng, *y.shape).astype(np.float32)
    gx = wg.winograd_grad_input(gy, wg.transform_kernel(W, np.float32), (1, 1, 1, 1))
    exact = conv2d_grad_input(gy.astype(np.float64), W.astype(np.float64), x.shape, 1, 1)
    assert gx.dtype == np.float32
    assert np.abs(gx - exact).max() / np.abs(exact).max() < 1e-5


def test_non_contiguous_input(rng):
    x, W = rand(rng, 1, 3, 9, 7).transpose(0, 1, 3, 2), rand(rng, 2, 3, 3, 3)   # (1, 3, 7, 9)
    y = wg.winograd_conv(x, wg.transform_kernel(W, np.float64), (1, 1, 1, 1))
    np.testing.assert_allclose(y, conv2d_naive(x, W, None, (1, 1), (1, 1, 1, 1)), rtol=1e-11,
                               atol=1e-11)


@pytest.mark.parametrize("W_shape, pad", [
    ((2, 3, 3, 3), (1, 1, 1, 1)), ((3, 3, 2, 3), (0, 1, 2, 0)),
    ((1, 4, 3, 1), (2, 0, 0, 0)), ((2, 2, 1, 1), (0, 0, 0, 0))])
def test_input_gradient_as_a_convolution_equals_col2im(rng, W_shape, pad):
    x_shape = (2, W_shape[1], 6, 5)
    gy = rand(rng, *conv2d_naive(np.zeros(x_shape), np.zeros(W_shape), None, (1, 1), pad).shape)
    W = rand(rng, *W_shape)
    for chunk in (1, None):
        np.testing.assert_allclose(grad_input_as_conv(gy, W, pad, chunk=chunk),
                                   conv2d_grad_input(gy, W, x_shape, 1, pad),
                                   rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_conv2d_algorithms_agree_through_backprop(rng, algorithm):
    """conv2d(..., algorithm=...) forward, gx (frozen and trainable W), gW and gb."""
    x, W, b = rand(rng, 2, 3, 7, 6), rand(rng, 3, 3, 3, 3), rand(rng, 3)
    gy = rand(rng, 2, 3, 7, 6)
    expected = conv2d_naive(x, W, b, (1, 1), (1, 1, 1, 1))
    for train in (False, True):
        xt, Wt, bt = (ag.Tensor(a, requires_grad=True) for a in (x, W, b))
        Wt.requires_grad = train
        y = conv2d(xt, Wt, bt, pad=1, algorithm=algorithm)
        assert y.creator.chosen == algorithm
        np.testing.assert_allclose(y.data, expected, rtol=1e-11, atol=1e-11)
        y.backward(gy)
        np.testing.assert_allclose(xt.grad, conv2d_grad_input(gy, W, x.shape, 1, 1),
                                   rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(bt.grad, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    result = ag.gradcheck(lambda x, W, b: conv2d(x, W, b, pad=(0, 2, 1, 0), algorithm=algorithm),
                          x, W, b)
    assert result.ok, result.errors


def test_gradcheck_rejects_a_wrong_winograd_gradient(rng, monkeypatch):
    """The check above can fail: forgetting to flip the data (unflipped kernel) is caught."""
    monkeypatch.setattr(conv_fast, "winograd_grad_input",
                        lambda gy, U, pad: wg.winograd_conv(gy, U.transpose(0, 2, 1),
                                                            wg.gradient_pad(pad)))
    x, W = rand(rng, 1, 2, 5, 4), rand(rng, 3, 2, 3, 3)
    assert not ag.gradcheck(lambda x, W: conv2d(x, W, pad=1, algorithm="winograd"), x, W).ok


@pytest.mark.parametrize("W_shape, stride, pad, expected", [
    ((256, 256, 3, 3), 1, 1, "winograd4"),
    ((512, 256, 3, 3), 1, 1, "winograd4"),
    ((256, 128, 3, 3), 1, 1, "winograd4"),   # from 128 channels (VGG's conv2_2 on)
    ((128, 128, 3, 3), 1, 1, "winograd4"),
    ((128, 127, 3, 3), 1, 1, "shifted"),     # below 128: shifted views (conv1_2, conv2_1)
    ((64, 64, 3, 3), 1, 1, "shifted"),
    ((128, 64, 3, 3), 1, 1, "shifted"),
    ((64, 3, 3, 3), 1, 1, "im2col"),         # C = 3: below 64
    ((32, 64, 3, 3), 1, 1, "im2col"),        # O = 32
    ((256, 256, 3, 3), 2, 1, "im2col"),      # Winograd and shifted views need stride 1,
    ((256, 256, 5, 5), 1, 2, "shifted"),     # Winograd a 3x3 kernel,
    ((256, 256, 3, 3), 1, 3, "im2col"),      # and pads <= 2 (shifted: below the kernel's size)
])
def test_auto_rule(W_shape, stride, pad, expected):
    stride, pad = (stride, stride), (pad,) * 4
    assert choose_algorithm("auto", W_shape, stride, pad) == expected
    assert choose_algorithm("im2col", W_shape, stride, pad) == "im2col"


@pytest.mark.parametrize("W_shape, kwargs, message", [
    ((4, 2, 3, 3), {"stride": 2}, r"conv2d: algorithm='winograd' needs a 3x3 kernel, stride 1.*"
                                  r"W \(4, 2, 3, 3\), stride \(2, 2\)"),
    ((4, 2, 3, 2), {}, r"conv2d: algorithm='winograd' needs.*W \(4, 2, 3, 2\)"),
    ((4, 2, 3, 3), {"pad": 3}, r"needs.*pad \(3, 3, 3, 3\)"),
])
def test_winograd_where_it_does_not_apply_is_refused(W_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d(np.zeros((1, 2, 6, 6)), np.zeros(W_shape), algorithm="winograd", **kwargs)


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match=r"conv2d: algorithm must be one of auto, im2col, "
                                         r"shifted, winograd, winograd4; got 'fft'"):
        conv2d(np.zeros((1, 2, 6, 6)), np.zeros((4, 2, 3, 3)), algorithm="fft")


def test_bias_on_z11_reaches_the_four_outputs_of_a_tile():
    """Column 1 of A^T is (1, 1), so A^T e11 A is all ones; row 1 of A^T is (0, 1, -1, -1)."""
    np.testing.assert_array_equal(wg.AT[:, 1], [1, 1])
    np.testing.assert_array_equal(wg.AT[1], [0, 1, -1, -1])
    e11 = np.zeros((4, 4))
    e11[1, 1] = 1
    np.testing.assert_array_equal(wg.AT @ e11 @ wg.AT.T, np.ones((2, 2)))


def counting_transforms(monkeypatch):
    """A list that grows by one at each call of winograd.transform_kernel."""
    calls, real = [], wg.transform_kernel
    monkeypatch.setattr(wg, "transform_kernel", lambda W, dtype: calls.append(W) or real(W, dtype))
    return calls


def test_kernels_passed_in_are_transformed_once(rng, monkeypatch):
    calls = counting_transforms(monkeypatch)
    W = ag.Tensor(rand(rng, 3, 2, 3, 3))
    kernels = ag.TransformedKernels(W.data)          # held by whoever owns W (VGG19.kernels)
    for _ in range(3):                                   # three iterations: forward and backward
        x = ag.Tensor(rand(rng, 1, 2, 6, 5), requires_grad=True)
        gy = rand(rng, 1, 3, 6, 5)
        conv2d(x, W, pad=1, algorithm="winograd", kernels=kernels).backward(gy)
        np.testing.assert_allclose(x.grad, conv2d_grad_input(gy, W.data, x.shape, 1, 1),
                                   rtol=1e-11, atol=1e-11)
    assert len(calls) == 1 and not hasattr(W, "winograd")     # nothing attached to the tensor


def test_kernels_of_another_array_are_refused(rng):
    """Replaced weights need new kernels: stale ones would give a wrong convolution silently."""
    W = ag.Tensor(rand(rng, 3, 2, 3, 3))
    kernels = ag.TransformedKernels(W.data)
    W.data = rand(rng, 3, 2, 3, 3)
    with pytest.raises(ValueError, match=r"conv2d: kernels were made from another weight array"):
        conv2d(rand(rng, 1, 2, 6, 5), W, pad=1, kernels=kernels)


def test_without_kernels_each_call_transforms(rng, monkeypatch):
    calls = counting_transforms(monkeypatch)
    for W in (ag.Tensor(rand(rng, 3, 2, 3, 3)), ag.Tensor(rand(rng, 3, 2, 3, 3),
                                                          requires_grad=True)):
        for _ in range(2):
            conv2d(rand(rng, 1, 2, 6, 5), W, pad=1, algorithm="winograd")
        assert not hasattr(W, "winograd")
    assert len(calls) == 4


@pytest.mark.parametrize("shape, O, pad, chunk", [
    ((1, 8, 64, 32), 8, (1, 1, 1, 1), 16 * 16 * 16 * 4),      # bands of 4 tile rows
    ((2, 6, 23, 17), 10, (1, 1, 1, 1), 10 ** 9),              # odd: the uncropped array too
    ((1, 5, 20, 15), 4, (0, 2, 1, 0), 16 * 9 * 8 * 2)])
def test_winograd_ops_allocate_what_their_buffers_functions_report(rng, shape, O, pad, chunk):
    y, sizes = assert_buffers_are_what_is_traced(wg, "winograd", rng, shape, O, pad, chunk)
    assert (sizes["uncropped"] > 0) == (y.shape[2] % 2 or y.shape[3] % 2)


def assert_buffers_are_what_is_traced(module, prefix, rng, shape, O, pad, chunk):
    """The forward and the input gradient of a Winograd ``module`` (winograd or winograd4, its
    functions named ``prefix``_conv ...) each allocate, at their peak, what their ``*_buffers``
    functions report. Returns y and the forward's sizes."""
    conv, grad_input = getattr(module, prefix + "_conv"), getattr(module, prefix + "_grad_input")
    x, W = rand(rng, *shape).astype(np.float32), rand(rng, O, shape[1], 3, 3).astype(np.float32)
    U = module.transform_kernel(W, np.float32)
    y, peak = traced_peak(lambda: conv(x, U, pad, chunk=chunk))
    sizes = getattr(module, prefix + "_conv_buffers")(shape, O, pad, chunk=chunk)
    assert sizes["y"] == y.size
    assert peak == pytest.approx(4 * sum(sizes.values()), abs=SLACK)
    gy = rand(rng, *y.shape).astype(np.float32)
    gx, peak = traced_peak(lambda: grad_input(gy, U, pad, chunk=chunk))
    grad_sizes = getattr(module, prefix + "_grad_input_buffers")(gy.shape, shape[1], pad,
                                                                 chunk=chunk)
    assert grad_sizes["gx"] == gx.size
    assert peak == pytest.approx(4 * sum(grad_sizes.values()), abs=SLACK)
    return y, sizes


def test_gradient_as_a_convolution_allocates_what_it_reports(rng):
    W, pad, chunk = rand(rng, 4, 6, 3, 3), (1, 1, 1, 1), 4 * 9 * 20 * 3
    gy = rand(rng, 2, 4, 16, 20)
    gx, peak = traced_peak(lambda: grad_input_as_conv(gy, W, pad, chunk=chunk))
    sizes = grad_input_as_conv_buffers(gy.shape, W.shape, pad, chunk=chunk)
    assert sizes["gx"] == gx.size
    assert peak == pytest.approx(8 * sum(sizes.values()), abs=SLACK)


SLACK = ufunc_slack(8)   # float64 arrays


def test_band_buffers_do_not_grow_with_the_image(rng):
    """Peak allocation minus the output stays the same for 4x taller inputs (bands of rows)."""
    W = wg.transform_kernel(rand(rng, 8, 8, 3, 3).astype(np.float32), np.float32)
    extra = []
    for H in (64, 256):
        x = rand(rng, 1, 8, H, 32).astype(np.float32)
        tracemalloc.start()
        try:
            y = wg.winograd_conv(x, W, (1, 1, 1, 1), chunk=16 * 16 * 16 * 4)   # 4 tile rows
            extra.append(tracemalloc.get_traced_memory()[1] - y.nbytes)
        finally:
            tracemalloc.stop()
    assert extra[1] == pytest.approx(extra[0], abs=4096)
    sizes = wg.winograd_conv_buffers((1, 8, 256, 32), 8, (1, 1, 1, 1), chunk=16 * 16 * 16 * 4)
    bands = sum(sizes.values()) - sizes["y"] - sizes["uncropped"]
    assert extra[1] == pytest.approx(4 * bands, abs=3 * 8192 * 4 + 4096)   # NumPy's ufunc buffers


@pytest.mark.parametrize("C, O, TW, chunk", [(64, 64, 1024, CHUNK_ELEMENTS["cpu"]),
                                             (512, 512, 16, CHUNK_ELEMENTS["cpu"]),
                                             (128, 128, 4, 10 ** 9), (8, 8, 300, 1)])
def test_band_rows_bound(C, O, TW, chunk):
    TH = 1024
    rows = wg.band_rows(C, O, TH, TW, chunk)
    assert 1 <= rows <= TH
    within = 16 * (C + O) * TW * rows <= chunk
    assert within or rows == 1 or rows * TW < wg.MIN_TILES + TW       # at most MIN_TILES' worth


@pytest.mark.parametrize("algorithm", ["winograd", "winograd4"])
def test_backend(xp, algorithm):
    """The same Winograd code on NumPy and CuPy: forward, gradient, kernel kept on the device."""
    rng = np.random.default_rng(1)
    x, W, b = rand(rng, 2, 3, 9, 8), rand(rng, 4, 3, 3, 3), rand(rng, 4)
    xt, Wt, bt = ag.Tensor(xp.asarray(x), requires_grad=True), ag.Tensor(xp.asarray(W)), \
        ag.Tensor(xp.asarray(b))
    kernels = ag.TransformedKernels(Wt.data)
    y = conv2d(xt, Wt, bt, pad=(1, 0, 2, 1), algorithm=algorithm, kernels=kernels)
    assert ag.get_array_module(y.data) is xp
    assert all(ag.get_array_module(U) is xp for U in kernels._made.values())
    np.testing.assert_allclose(y.numpy(), conv2d_naive(x, W, b, (1, 1), (1, 0, 2, 1)), rtol=1e-10,
                               atol=1e-10)
    gy = rand(rng, *y.shape)
    y.backward(xp.asarray(gy))
    expected = conv2d_grad_input(gy, W, x.shape, 1, (1, 0, 2, 1))
    np.testing.assert_allclose(ag.to_cpu(xt.grad), expected, rtol=1e-10, atol=1e-10)
