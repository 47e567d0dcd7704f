"""conv2d: the loop oracle, finite differences, chunking, frozen weights, errors, both backends,
and the buffer sizes each op reports against what it allocates."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import miniautograd as ag
from miniautograd import conv as conv_module
from miniautograd.backend import CHUNK_ELEMENTS
from miniautograd.conv import (chunks, conv2d_forward, conv2d_forward_buffers, conv2d_grad_input,
                               conv2d_grad_input_buffers, conv2d_grad_weight,
                               conv2d_grad_weight_buffers, conv2d_im2col)
from miniautograd.conv_fast import conv2d
from miniautograd.im2col import col2im, im2col
from naive import conv2d_naive
from traced import traced_peak, ufunc_slack

# (x shape, W shape, stride, pad as passed; then stride (sh, sw), pad (top, bottom, left, right))
CASES = [
    ((1, 1, 5, 5), (1, 1, 3, 3), 1, 0, (1, 1), (0, 0, 0, 0)),
    ((2, 3, 7, 6), (4, 3, 3, 2), 1, 1, (1, 1), (1, 1, 1, 1)),
    ((2, 3, 7, 6), (4, 3, 2, 3), 2, (1, 2), (2, 2), (1, 1, 2, 2)),
    ((2, 3, 9, 8), (5, 3, 3, 3), (2, 1), (0, 1, 2, 1), (2, 1), (0, 1, 2, 1)),
    ((3, 2, 6, 7), (2, 2, 1, 1), 1, 0, (1, 1), (0, 0, 0, 0)),
    ((1, 3, 8, 9), (4, 3, 3, 3), (3, 2), (2, 0, 1, 0), (3, 2), (2, 0, 1, 0)),
    ((2, 4, 5, 5), (3, 4, 5, 5), 1, 0, (1, 1), (0, 0, 0, 0)),        # one output pixel
    ((1, 2, 4, 3), (3, 2, 3, 3), 1, (2, 0), (1, 1), (2, 2, 0, 0)),   # pad > needed, odd sizes
]


def rand(rng, *shape):
    return rng.standard_normal(shape)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("x_shape, W_shape, stride, pad, stride2, pad4", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_forward_matches_loop_oracle(rng, x_shape, W_shape, stride, pad, stride2, pad4, bias):
    x, W = rand(rng, *x_shape), rand(rng, *W_shape)
    b = rand(rng, W_shape[0]) if bias else None
    y = conv2d(x, W, b, stride=stride, pad=pad)
    expected = conv2d_naive(x, W, b, stride2, pad4)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


def test_output_size_formula():
    x, W = np.zeros((2, 3, 11, 8)), np.zeros((5, 3, 4, 3))
    y = conv2d(x, W, stride=(3, 2), pad=(1, 2, 0, 1))
    assert y.shape == (2, 5, 1 + (11 + 1 + 2 - 4) // 3, 1 + (8 + 0 + 1 - 3) // 2)


def test_float32_stays_float32(rng):
    x, W, b = (rand(rng, 2, 3, 6, 5).astype(np.float32), rand(rng, 4, 3, 3, 3).astype(np.float32),
               rand(rng, 4).astype(np.float32))
    y = conv2d(x, W, b, pad=1)
    assert y.dtype == np.float32
    # float32 sums of 27 products of unit normals: relative error ~1e-6
    np.testing.assert_allclose(y.data, conv2d_naive(x, W, b, (1, 1), (1, 1, 1, 1)),
                               rtol=1e-4, atol=1e-5)
    xt, Wt = ag.Tensor(x, requires_grad=True), ag.Tensor(W, requires_grad=True)
    conv2d(xt, Wt, b, pad=1).backward(np.ones(y.shape, np.float32))
    assert xt.grad.dtype == np.float32 and Wt.grad.dtype == np.float32


def test_pad_and_stride_forms_agree(rng):
    x, W = rand(rng, 1, 2, 6, 7), rand(rng, 3, 2, 3, 2)
    ys = [conv2d(x, W, stride=s, pad=p).data for s, p in
          [(2, 1), ((2, 2), (1, 1)), ([2, 2], (1, 1, 1, 1))]]
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_array_equal(ys[0], ys[2])


@pytest.mark.parametrize("x_shape, W_shape, stride, pad, stride2, pad4", CASES[1:6])
def test_gradients_match_finite_differences(rng, x_shape, W_shape, stride, pad, stride2, pad4):
    x, W, b = rand(rng, *x_shape), rand(rng, *W_shape), rand(rng, W_shape[0])
    result = ag.gradcheck(lambda x, W, b: conv2d(x, W, b, stride=stride, pad=pad), x, W, b)
    assert result.ok, result.errors


def test_gradcheck_rejects_a_transposed_kernel_gradient(rng, monkeypatch):
    """The check above can fail: flipping gW's kernel axes (a classic slip) is caught."""
    right = conv_module.conv2d_grad_weight
    monkeypatch.setattr(conv_module, "conv2d_grad_weight",
                        lambda *a, **k: right(*a, **k)[:, :, ::-1, ::-1])
    x, W = rand(rng, 1, 2, 5, 4), rand(rng, 3, 2, 3, 2)
    assert not ag.gradcheck(lambda x, W: conv2d(x, W, pad=1), x, W).ok


@pytest.mark.parametrize("chunk", [1, 7, 40, 200, 10**9])
def test_chunked_equals_whole(rng, chunk):
    x, W, stride, pad = rand(rng, 3, 2, 9, 7), rand(rng, 4, 2, 3, 2), (2, 1), (1, 0, 2, 1)
    gy = rand(rng, *conv2d_naive(x, W, None, stride, pad).shape)
    whole = dict(chunk=10**9)
    np.testing.assert_allclose(conv2d_forward(x, W, None, stride, pad, chunk=chunk),
                               conv2d_forward(x, W, None, stride, pad, **whole),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_grad_input(gy, W, x.shape, stride, pad, chunk=chunk),
                               conv2d_grad_input(gy, W, x.shape, stride, pad, **whole),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_grad_weight(gy, x, W.shape, stride, pad, chunk=chunk),
                               conv2d_grad_weight(gy, x, W.shape, stride, pad, **whole),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N, OH, row_elements, chunk",
                         [(1, 10, 6, 1), (1, 10, 6, 13), (3, 4, 5, 20), (3, 4, 5, 45),
                          (5, 1, 2, 3), (2, 7, 4, 10**6)])
def test_chunks_cover_every_row_once_within_the_bound(N, OH, row_elements, chunk):
    seen = np.zeros((N, OH), dtype=int)
    for images, rows in chunks(N, OH, row_elements, chunk):
        seen[images, rows] += 1
        size = (images.stop - images.start) * (rows.stop - rows.start) * row_elements
        assert size <= max(chunk, row_elements)
    np.testing.assert_array_equal(seen, 1)


def test_im2col_buffer_is_bounded(rng, monkeypatch):
    sizes = []

    def recording_im2col(*args, **kwargs):
        col = im2col(*args, **kwargs)
        sizes.append(col.size)
        return col

    monkeypatch.setattr(conv_module, "im2col", recording_im2col)
    x, W = rand(rng, 2, 3, 12, 10), rand(rng, 2, 3, 3, 3)
    y = conv2d_forward(x, W, None, 1, 1, chunk=3 * 9 * 10 * 4)        # four output rows
    np.testing.assert_allclose(y, conv2d_naive(x, W, None, (1, 1), (1, 1, 1, 1)),
                               rtol=1e-12, atol=1e-12)
    assert len(sizes) == 6 and max(sizes) == 3 * 9 * 10 * 4
    sizes.clear()
    x, W = np.zeros((1, 16, 256, 128), np.float32), np.zeros((1, 16, 3, 3), np.float32)
    conv2d(x, W, pad=1)                     # col would be 16*9*256*128 > the CPU's chunk
    assert len(sizes) > 1 and max(sizes) <= CHUNK_ELEMENTS["cpu"]


def test_col2im_is_the_adjoint_of_im2col(rng):
    """<im2col(x), c> == <x, col2im(c)> for every x, c: col2im is im2col transposed."""
    x = rand(rng, 2, 3, 8, 7)
    col = im2col(x, 3, 2, stride=(2, 1))
    c = rand(rng, *col.shape)
    back = col2im(c, stride=(2, 1), out=np.zeros_like(x))
    np.testing.assert_allclose(np.sum(col * c), np.sum(x * back), rtol=1e-12)


def test_frozen_weight_never_computes_its_gradient(rng, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("conv2d_grad_weight was called for a frozen W")

    monkeypatch.setattr(conv_module, "conv2d_grad_weight", forbidden)
    x, W, b = ag.Tensor(rand(rng, 1, 2, 5, 6), requires_grad=True), rand(rng, 3, 2, 3, 3), None
    y = conv2d(x, W, b, pad=1)
    gy = rand(rng, *y.shape)
    y.backward(gy)
    np.testing.assert_allclose(x.grad, conv2d_grad_input(gy, W, x.shape, 1, 1),
                               rtol=1e-12, atol=1e-12)
    assert y.creator.x is None          # x is not even kept when W's gradient is not needed


def test_frozen_input_never_computes_its_gradient(rng, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("conv2d_grad_input was called for an input that needs no gradient")

    monkeypatch.setattr(conv_module, "conv2d_grad_input", forbidden)
    x = rand(rng, 1, 2, 5, 6)
    W, b = ag.Tensor(rand(rng, 3, 2, 3, 3), requires_grad=True), ag.Tensor(rand(rng, 3),
                                                                           requires_grad=True)
    y = conv2d(x, W, b, stride=2)
    gy = rand(rng, *y.shape)
    y.backward(gy)
    np.testing.assert_allclose(b.grad, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert y.creator.W is None


def test_backward_keeps_no_im2col_matrix(rng):
    x = ag.Tensor(rand(rng, 2, 3, 8, 8), requires_grad=True)
    W = ag.Tensor(rand(rng, 4, 3, 3, 3), requires_grad=True)
    y = conv2d(x, W, pad=1)
    kept = [v for v in vars(y.creator).values() if hasattr(v, "shape")]
    assert all(v is x.data or v is W.data for v in kept), [v.shape for v in kept]


@st.composite
def conv_problems(draw):
    """Random conv2d geometry: non-square kernels and strides, each pad side separate, N > 1."""
    N, C, O = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = draw(st.integers(max(1, KH - pad[0] - pad[1]), 9))   # the padded input holds the kernel
    W = draw(st.integers(max(1, KW - pad[2] - pad[3]), 9))
    chunk = draw(st.sampled_from([1, 50, 10**9]))
    return (N, C, H, W), (O, C, KH, KW), stride, pad, chunk


@settings(max_examples=150, deadline=None)
@given(conv_problems(), st.integers(0, 2**32 - 1))
def test_hypothesis_forward_and_both_gradients(problem, seed):
    """Forward against the oracle; gx and gW by the adjoint identities of a bilinear map.

    y is linear in x and in W, so for any directions dx, dW and any gy (exact, no eps):
    <gx(gy), dx> = <gy, conv(dx, W)> and <gW(gy), dW> = <gy, conv(x, dW)>.
    """
    x_shape, W_shape, stride, pad, chunk = problem
    rng = np.random.default_rng(seed)
    x, W, b = rand(rng, *x_shape), rand(rng, *W_shape), rand(rng, W_shape[0])
    y = conv2d_forward(x, W, b, stride, pad, chunk=chunk)
    np.testing.assert_allclose(y, conv2d_naive(x, W, b, stride, pad), rtol=1e-10, atol=1e-10)
    gy, dx, dW = rand(rng, *y.shape), rand(rng, *x_shape), rand(rng, *W_shape)
    gx = conv2d_grad_input(gy, W, x_shape, stride, pad, chunk=chunk)
    gW = conv2d_grad_weight(gy, x, W_shape, stride, pad, chunk=chunk)
    assert gx.shape == x_shape and gW.shape == W_shape
    np.testing.assert_allclose(np.sum(gx * dx), np.sum(gy * conv2d_naive(dx, W, None, stride, pad)),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.sum(gW * dW), np.sum(gy * conv2d_naive(x, dW, None, stride, pad)),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("x_shape, W_shape, kwargs, message", [
    ((1, 3, 5, 5), (4, 2, 3, 3), {}, r"conv2d: x has 3 channels \(shape \(1, 3, 5, 5\)\).*2"),
    ((1, 2, 2, 5), (4, 2, 3, 3), {}, r"conv2d: the kernel 3x3 is larger than the padded input 2x5"),
    ((1, 2, 2, 2), (4, 2, 3, 3), {"pad": (0, 1)}, r"larger than the padded input 2x4"),
    ((2, 5, 5), (4, 2, 3, 3), {}, r"conv2d: the input must have shape \(N, C, H, W\).*\(2, 5, 5\)"),
    ((1, 2, 5, 5), (2, 3, 3), {}, r"conv2d: W must have shape \(O, C, KH, KW\).*\(2, 3, 3\)"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"pad": -1}, r"conv2d: pad must be"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"pad": (1, 2, 3)}, r"conv2d: pad must be.*\(1, 2, 3\)"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"pad": 1.0}, r"conv2d: pad must be"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"stride": 0}, r"conv2d: stride must be an int >= 1"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"stride": (1, 2, 1)}, r"conv2d: stride must be"),
    ((1, 2, 5, 5), (4, 2, 3, 3), {"stride": True}, r"conv2d: stride must be"),
])
def test_errors_name_the_op_and_the_shapes(x_shape, W_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d(np.zeros(x_shape), np.zeros(W_shape), **kwargs)


def test_bias_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match=r"conv2d: b must have shape \(4,\).*got shape \(3,\)"):
        conv2d(np.zeros((1, 2, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(3))


def test_backend(xp):
    """The same code on NumPy and CuPy: forward and all three gradients against the oracle."""
    rng = np.random.default_rng(1)
    x, W, b = rand(rng, 2, 3, 9, 8), rand(rng, 4, 3, 3, 2), rand(rng, 4)
    xt, Wt, bt = (ag.Tensor(xp.asarray(a), requires_grad=True) for a in (x, W, b))
    y = conv2d(xt, Wt, bt, stride=(2, 1), pad=(1, 0, 2, 1))
    np.testing.assert_allclose(y.numpy(), conv2d_naive(x, W, b, (2, 1), (1, 0, 2, 1)), rtol=1e-10)
    gy = rand(rng, *y.shape)
    y.backward(xp.asarray(gy))
    for t, a in ((xt, x), (Wt, W)):
        assert ag.get_array_module(t.grad) is xp and t.grad.shape == a.shape
    expected_gx = conv2d_grad_input(gy, W, x.shape, (2, 1), (1, 0, 2, 1))
    np.testing.assert_allclose(ag.to_cpu(xt.grad), expected_gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ag.to_cpu(bt.grad), gy.sum(axis=(0, 2, 3)), rtol=1e-10)
    result = ag.gradcheck(lambda x, W: conv2d(x, W, stride=2, pad=1),
                          xp.asarray(x[:1]), xp.asarray(W), directional=True)
    assert result.ok, result.errors


def test_the_reference_alone_matches_the_oracle_and_finite_differences(rng):
    """conv.py on its own (conv2d_im2col): im2col forward, col2im input gradient, gW, gb."""
    x, W, b = rand(rng, 2, 3, 7, 6), rand(rng, 4, 3, 3, 2), rand(rng, 4)
    y = conv2d_im2col(x, W, b, stride=(2, 1), pad=(1, 0, 2, 1))
    np.testing.assert_allclose(y.data, conv2d_naive(x, W, b, (2, 1), (1, 0, 2, 1)), rtol=1e-12,
                               atol=1e-12)
    result = ag.gradcheck(lambda x, W, b: conv2d_im2col(x, W, b, pad=1), x, W, b)
    assert result.ok, result.errors


def test_the_reference_takes_col2im_where_conv2d_does_not(rng, monkeypatch):
    """Stride 1, O <= C: conv2d computes gx as a convolution of gy, conv2d_im2col by col2im."""
    calls, right = [], conv_module.conv2d_grad_input
    monkeypatch.setattr(conv_module, "conv2d_grad_input",
                        lambda *a, **k: calls.append(1) or right(*a, **k))
    x, W = ag.Tensor(rand(rng, 1, 4, 6, 5), requires_grad=True), rand(rng, 3, 4, 3, 3)
    gradients = []
    for op in (conv2d, conv2d_im2col):
        x.grad = None
        y = op(x, W, pad=1)
        y.backward(np.ones(y.shape))
        gradients.append(x.grad)
        assert y.creator.name == "Conv2d"
    assert len(calls) == 1
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-12, atol=1e-12)


def test_col_is_kh_kw_over_strides_times_larger_than_x(rng):
    """col holds C*KH*KW*OH*OW entries, x C*H*W: the ratio is KH*KW/(sh*sw), not C times more."""
    x = rand(rng, 1, 16, 12, 8)
    for (KH, KW), stride, pad in [((3, 3), (1, 1), 1), ((3, 3), (2, 2), 1), ((2, 2), (2, 2), 0)]:
        col = im2col(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))), KH, KW, stride=stride)
        assert col.size / x.size == KH * KW / (stride[0] * stride[1])


SLACK = ufunc_slack(8)   # float64 arrays


@pytest.mark.parametrize("x_shape, W_shape, stride, pad, chunk", [
    ((2, 8, 20, 16), (6, 8, 3, 3), 1, 1, 10 ** 9),          # whole images at once
    ((1, 16, 64, 40), (8, 16, 3, 3), 1, 1, 16 * 9 * 40 * 5),  # bands of 5 output rows
    ((2, 4, 24, 30), (5, 4, 3, 2), (2, 1), 0, 4 * 6 * 30),   # no padding: no copy of x
])
def test_each_op_allocates_what_its_buffers_function_reports(rng, x_shape, W_shape, stride, pad,
                                                             chunk):
    x, W = rand(rng, *x_shape), rand(rng, *W_shape)
    y, peak = traced_peak(lambda: conv2d_forward(x, W, None, stride, pad, chunk=chunk))
    sizes = conv2d_forward_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    assert sizes["y"] == y.size and (sizes["band"] == 0) == (pad == 0)
    assert peak == pytest.approx(8 * sum(sizes.values()), abs=SLACK)
    gy = rand(rng, *y.shape)
    gx, peak = traced_peak(lambda: conv2d_grad_input(gy, W, x_shape, stride, pad, chunk=chunk))
    assert gx.shape == x_shape
    sizes = conv2d_grad_input_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    assert peak == pytest.approx(8 * sum(sizes.values()), abs=SLACK)
    _, peak = traced_peak(lambda: conv2d_grad_weight(gy, x, W_shape, stride, pad, chunk=chunk))
    sizes = conv2d_grad_weight_buffers(x_shape, W_shape, stride, pad, chunk=chunk)
    assert peak == pytest.approx(8 * sum(sizes.values()), abs=SLACK)


def test_the_op_sizes_its_col_buffer_with_the_buffers_function(rng, monkeypatch):
    """The buffer comes from conv2d_forward_buffers: a wrong size there breaks the op."""
    right = conv_module.conv2d_forward_buffers
    monkeypatch.setattr(conv_module, "conv2d_forward_buffers",
                        lambda *a, **k: dict(right(*a, **k), col=1))
    with pytest.raises(ValueError):
        conv2d_forward(rand(rng, 1, 2, 6, 5), rand(rng, 3, 2, 3, 3), None, 1, 1)


def test_pad_rows_is_a_band_of_the_padded_input(rng):
    """pad_rows(x, rows, pad) equals np.pad(x)[:, :, rows] for every band, border rows included,
    and is a view of x itself (no copy) without padding."""
    from miniautograd.im2col import pad_rows
    x, pad = rand(rng, 2, 3, 5, 4), (2, 1, 0, 3)
    xpad = np.pad(x, ((0, 0), (0, 0), (2, 1), (0, 3)))
    buf = np.full(xpad.size, np.nan)
    for rows in (slice(0, 8), slice(0, 1), slice(1, 4), slice(3, 8), slice(6, 8), slice(7, 8)):
        np.testing.assert_array_equal(pad_rows(x, rows, pad, out=buf), xpad[:, :, rows])
    assert np.shares_memory(pad_rows(x, slice(1, 3), (0,) * 4, out=buf), x)
