"""Convolution by shifted views (autograd/shifted.py): against the naive loop for every pad,
kernel size, batch and band count, its stacked kernel and band, its buffers, and conv2d's use of
it (the input gradient through the flipped kernel, the weight gradient, the refusals)."""
import numpy as np
import pytest

import miniautograd as ag
from miniautograd import shifted as sh
from miniautograd.conv import conv2d_im2col
from miniautograd.conv_fast import conv2d
from naive import conv2d_naive
from test_winograd import SLACK, rand, rng  # noqa: F401 (rng: the fixture)
from traced import traced_peak


@pytest.mark.parametrize("shape, W_shape, pad, chunk", [
    ((2, 3, 7, 9), (4, 3, 3, 3), (1, 1, 1, 1), None),        # one band per image
    ((1, 5, 6, 5), (2, 5, 3, 3), (0, 2, 1, 0), 1),           # a band per output row
    ((2, 4, 8, 8), (3, 4, 2, 3), (1, 0, 2, 1), 200),         # 2x3 kernel, bands of 2 rows
    ((1, 2, 5, 5), (3, 2, 1, 1), (0, 0, 0, 0), None),        # 1x1: no shifted view at all
    ((1, 3, 6, 7), (2, 3, 3, 3), (2, 2, 2, 2), 30),          # pads beyond the kernel (forward)
    ((1, 2, 9, 4), (3, 2, 5, 5), (2, 2, 2, 2), None)])       # 5x5
def test_forward_equals_the_naive_loop(rng, shape, W_shape, pad, chunk):
    x, W, b = rand(rng, *shape), rand(rng, *W_shape), rand(rng, W_shape[0])
    y = sh.shifted_conv(x, W, b, pad, chunk=chunk)
    np.testing.assert_allclose(y, conv2d_naive(x, W, b, (1, 1), pad), rtol=1e-10, atol=1e-10)


def test_float32_stays_float32_and_keeps_a_direct_sums_error(rng):
    """Max error / max |y| against float64, as test_winograd4's: a direct sum's, 2.5e-7 to
    3.7e-7 measured (F(4x4, 3x3): 1e-5); the bound 2e-6 leaves 5x for other CPUs' BLAS."""
    x = rng.uniform(0, 4, (1, 64, 20, 16)).astype(np.float32)
    W = (rand(rng, 32, 64, 3, 3) * np.sqrt(2 / 576)).astype(np.float32)
    y = sh.shifted_conv(x, W, None, (1, 1, 1, 1))
    exact = conv2d_naive(x.astype(np.float64), W.astype(np.float64), None, (1, 1), (1, 1, 1, 1))
    assert y.dtype == np.float32
    assert np.abs(y - exact).max() / np.abs(exact).max() < 2e-6


def test_the_stack_holds_each_kernel_row_and_the_kernel_each_column(rng):
    """S[i*C + c, r*Wp + w] = xpad[c, first + r + i, w], zeros after; Wst[j] = W[:, :, :, j]
    with its (c, i) as i*C + c."""
    x, pad, first = rand(rng, 2, 4, 5), (1, 1, 2, 0), 1          # C = 2, Wp = 7
    xpad = np.pad(x, ((0, 0), (1, 1), (2, 0)))
    S = np.full((3 * 2, 2 * 7 + 2), np.nan)                       # KH = 3, R = 2, KW = 3
    sh.fill_stack(x, first, pad, S)
    for i in range(3):
        np.testing.assert_array_equal(S[2 * i:2 * i + 2, :14].reshape(2, 2, 7),
                                      xpad[:, first + i:first + i + 2])
    np.testing.assert_array_equal(S[:, 14:], 0)
    W = rand(rng, 5, 2, 3, 3)
    Wst = sh.stack_kernel(W)
    for i, c, j in np.ndindex(3, 2, 3):
        np.testing.assert_array_equal(Wst[j][:, i * 2 + c], W[:, c, i, j])


@pytest.mark.parametrize("shape, W_shape, pad, chunk", [
    ((1, 8, 40, 30), (8, 8, 3, 3), (1, 1, 1, 1), 3000),      # several bands
    ((2, 6, 23, 17), (10, 6, 3, 3), (1, 1, 1, 1), 10 ** 9),  # one band per image
    ((1, 5, 20, 15), (4, 5, 3, 2), (0, 2, 1, 0), 1)])
def test_allocates_what_its_buffers_function_reports(rng, shape, W_shape, pad, chunk):
    x, W = rand(rng, *shape).astype(np.float32), rand(rng, *W_shape).astype(np.float32)
    y, peak = traced_peak(lambda: sh.shifted_conv(x, W, None, pad, chunk=chunk))
    sizes = sh.shifted_conv_buffers(shape, W_shape, pad, chunk=chunk)
    assert sizes["y"] == y.size
    assert peak == pytest.approx(4 * sum(sizes.values()), abs=SLACK)


@pytest.mark.parametrize("W_shape, pad", [((4, 3, 3, 3), (1, 1, 1, 1)),   # O > C
                                          ((2, 3, 3, 2), (1, 0, 1, 1)),   # O < C, 3x2
                                          ((3, 3, 3, 3), (0, 2, 2, 1))])
def test_conv2d_backprop_agrees_with_the_reference(rng, W_shape, pad):
    """y, gx (shifted views of gy with the flipped kernel), gW and gb against conv2d_im2col,
    whose input gradient is col2im."""
    x_data, W_data, b_data = rand(rng, 2, 3, 7, 6), rand(rng, *W_shape), rand(rng, W_shape[0])
    grads = {}
    for name, op in (("shifted", lambda x, W, b: conv2d(x, W, b, pad=pad, algorithm="shifted")),
                     ("reference", lambda x, W, b: conv2d_im2col(x, W, b, pad=pad))):
        x, W, b = (ag.Tensor(a, requires_grad=True) for a in (x_data, W_data, b_data))
        y = op(x, W, b)
        (y * ag.Tensor(np.arange(y.data.size).reshape(y.shape) % 7)).sum().backward()
        grads[name] = [y.data, x.grad, W.grad, b.grad]
    for ours, reference in zip(grads["shifted"], grads["reference"]):
        np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 2}, r"algorithm='shifted' needs stride 1 and pads below the kernel's size; "
                    r"got W \(4, 2, 3, 3\), stride \(2, 2\)"),
    ({"pad": 3}, r"needs stride 1.*pad \(3, 3, 3, 3\)")])
def test_where_it_does_not_apply_it_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d(np.zeros((1, 2, 6, 6)), np.zeros((4, 2, 3, 3)), algorithm="shifted", **kwargs)


def test_backend(xp, rng, monkeypatch):
    """On NumPy and CuPy (skipped without a GPU): several bands, the last one shorter (its
    views are not contiguous), forward and input gradient against the NumPy reference."""
    monkeypatch.setattr(sh, "BAND_ELEMENTS", 700)
    x, W, b = rand(rng, 2, 6, 11, 9), rand(rng, 5, 6, 3, 3), rand(rng, 5)
    assert sh.band_rows(6, 5, 3, 11, 11, 1 << 22) == 2                # 6 bands: 2, ..., 2, 1
    xt = ag.Tensor(xp.asarray(x), requires_grad=True)
    y = conv2d(xt, ag.Tensor(xp.asarray(W)), ag.Tensor(xp.asarray(b)), pad=1,
               algorithm="shifted")
    assert ag.get_array_module(y.data) is xp
    gy = rand(rng, *y.shape)
    y.backward(xp.asarray(gy))
    reference = ag.Tensor(x, requires_grad=True)
    conv2d_im2col(reference, ag.Tensor(W), ag.Tensor(b), pad=1).backward(gy)
    np.testing.assert_allclose(ag.to_cpu(y.data), conv2d_naive(x, W, b, (1, 1), (1, 1, 1, 1)),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ag.to_cpu(xt.grad), reference.grad, rtol=1e-10, atol=1e-10)
