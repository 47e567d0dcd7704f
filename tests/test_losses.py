"""The style-transfer losses: hand formulas, size independence, gradients by finite differences."""
import numpy as np
import pytest

import miniautograd as ag
from minivgg import losses


def directional_check(f, x, *, eps=1e-6, seed=0):
    """Compare <df/dx, v> with the central difference of f along a random direction v (float64).

    f maps an array to a scalar Tensor; returns (analytic, numeric).
    """
    v = np.random.default_rng(seed).standard_normal(x.shape)
    xt = ag.Tensor(x, requires_grad=True)
    f(xt).backward()
    analytic = float(np.vdot(xt.grad, v))
    numeric = (f(ag.Tensor(x + eps * v)).item() - f(ag.Tensor(x - eps * v)).item()) / (2 * eps)
    return analytic, numeric


def gram_np(F):
    """Gram matrices (N, C, C) of (N, C, H, W) by the paper's definition, in plain NumPy."""
    N, C, H, W = F.shape
    Fm = F.reshape(N, C, H * W)  # (N, C, H, W) -> (N, C, M)
    return np.stack([Fm[n] @ Fm[n].T for n in range(N)])


def upsample2(x):
    """Each pixel repeated 2x2: the same picture at twice the size."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


rng = np.random.default_rng(42)


def test_content_loss_matches_paper_formula_divided_by_layer_size():
    F, P = rng.standard_normal((1, 5, 4, 7)), rng.standard_normal((1, 5, 4, 7))
    expected = 0.5 * np.sum((F - P) ** 2) / (5 * 4 * 7)
    assert losses.content_loss(ag.Tensor(F), P).item() == pytest.approx(expected, rel=1e-12)


def test_style_layer_loss_is_the_papers_E_l_when_sizes_match():
    F, S = rng.standard_normal((1, 6, 5, 3)), rng.standard_normal((1, 6, 5, 3))
    C, M = 6, 15
    expected = np.sum((gram_np(F) - gram_np(S)) ** 2) / (4 * C ** 2 * M ** 2)
    A_hat = gram_np(S) / M
    assert losses.style_layer_loss(ag.Tensor(F), A_hat).item() == pytest.approx(expected, rel=1e-12)


def tv_np(x):
    """(S/512)^2 * (sum of squared neighbour differences) / (N H W), S = max(H, W), in NumPy."""
    N, C, H, W = x.shape
    summed = np.sum(np.diff(x, axis=2) ** 2) + np.sum(np.diff(x, axis=3) ** 2)
    return (max(H, W) / 512) ** 2 * summed / (N * H * W)


def test_tv_loss_matches_hand_formula():
    x = rng.standard_normal((2, 3, 5, 6))
    dv, dh = np.diff(x, axis=2), np.diff(x, axis=3)
    expected = (6 / 512) ** 2 * (np.sum(dv ** 2) + np.sum(dh ** 2)) / (2 * 5 * 6)
    assert losses.tv_loss(ag.Tensor(x)).item() == pytest.approx(expected, rel=1e-12)


def test_tv_loss_at_the_reference_size_is_the_mean_over_pixels():
    """At 512 px (the default --size) the size factor is 1: the default tv_weight keeps the
    smoothing strength it had when L_tv was sum d^2 / (N H W)."""
    x = rng.standard_normal((1, 3, 384, 512))
    summed = np.sum(np.diff(x, axis=2) ** 2) + np.sum(np.diff(x, axis=3) ** 2)
    assert losses.TV_REFERENCE_SIZE == 512
    assert losses.tv_loss(ag.Tensor(x)).item() == pytest.approx(summed / (384 * 512), rel=1e-12)


def ramp(size):
    """A horizontal 0..255 ramp over a size x size image: (1, 3, size, size)."""
    return np.broadcast_to(np.linspace(0, 255, size), (1, 3, size, size)).copy()


def smooth_field(height, width, *, seed=0, cycles=6):
    """A random smooth picture, (1, 3, height, width), sampled at the pixel centres.

    A sum of waves with up to ``cycles`` periods along the longest side, amplitudes falling as
    1/frequency like a photograph's, spread by about 40 grey levels around 128. The same seed gives
    the same continuous picture at every size: only the sampling grid changes.
    """
    r = np.random.default_rng(seed)
    k = np.arange(-cycles, cycles + 1)
    amplitude = 1.0 / np.maximum(np.hypot(k[:, None], k[None, :]), 1.0)     # (2K+1, 2K+1)
    coeffs = amplitude * (r.standard_normal((3,) + amplitude.shape)
                          + 1j * r.standard_normal((3,) + amplitude.shape))  # (3, 2K+1, 2K+1)
    side = max(height, width)
    waves_y = np.exp(2j * np.pi * np.outer((np.arange(height) + 0.5) / side, k))  # (H, 2K+1)
    waves_x = np.exp(2j * np.pi * np.outer((np.arange(width) + 0.5) / side, k))   # (W, 2K+1)
    field = (waves_y @ coeffs @ waves_x.T).real                                    # (3, H, W)
    return (128 + 40 * field / np.sqrt(np.sum(amplitude ** 2)))[None]              # (1, 3, H, W)


def test_tv_loss_of_a_ramp_is_the_same_at_256_and_1024_px():
    """Would fail with sum d^2 / (N H W): 2.99 at 256 px, 0.19 at 1024 px.

    rel=5e-3: a ramp over S px has S-1 steps of 255/(S-1), so L_tv = 3 * 255^2/512^2 * S/(S-1),
    and 256/255 and 1024/1023 differ by 0.3% (the missing difference at the border).
    """
    small, big = (losses.tv_loss(ag.Tensor(ramp(size))).item() for size in (256, 1024))
    assert small == pytest.approx(3 * 255 ** 2 / 512 ** 2 * 256 / 255, rel=1e-12)
    assert big == pytest.approx(small, rel=5e-3)


def test_tv_loss_of_a_resampled_smooth_picture_is_the_same_at_256_and_1024_px():
    """The same continuous picture, sampled on 256x192 and 1024x768 grids (4:3, so S = width).

    rel=1e-2: the sum of squared steps misses the differences across one border row and column
    (1/192 of the area at the small size, ~0.5%), and a step between pixel centres approximates
    the slope to within (2 pi 6/256)^2 / 24 (~0.1%) for the highest of the picture's frequencies.
    """
    small, big = (losses.tv_loss(ag.Tensor(smooth_field(h, w))).item()
                  for h, w in ((192, 256), (768, 1024)))
    assert big == pytest.approx(small, rel=1e-2)
    assert small > 0.01                                 # a picture with real slopes, not flat


def test_tv_loss_gradient_is_the_hand_formula_with_the_size_factor():
    """dL/dx = 2 (dv above - dv below + dh left - dh right) (S/512)^2 / (N H W), and finite
    differences agree along a random direction (float64), at a size where the factor is not 1."""
    x = smooth_field(24, 40) + rng.standard_normal((1, 3, 24, 40))
    xt = ag.Tensor(x, requires_grad=True)
    losses.tv_loss(xt).backward()
    dv, dh = np.diff(x, axis=2), np.diff(x, axis=3)
    g = np.zeros_like(x)
    g[:, :, 1:] += dv
    g[:, :, :-1] -= dv
    g[..., 1:] += dh
    g[..., :-1] -= dh
    expected = 2 * g * (40 / 512) ** 2 / (24 * 40)
    # atol: where the four differences nearly cancel, float64 rounding of each (~1e-16 of the
    # largest) is all that is left, so compare against the gradient's scale, not element-wise.
    np.testing.assert_allclose(xt.grad, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    analytic, numeric = directional_check(losses.tv_loss, x)
    assert analytic == pytest.approx(numeric, rel=1e-6)
    assert ag.gradcheck(losses.tv_loss, rng.standard_normal((2, 3, 4, 7)))


def test_content_and_style_losses_do_not_grow_with_image_size():
    F, P, S = (rng.standard_normal((1, 4, 6, 5)) for _ in range(3))
    small_c = losses.content_loss(ag.Tensor(F), P).item()
    big_c = losses.content_loss(ag.Tensor(upsample2(F)), upsample2(P)).item()
    A_small = losses.normalized_gram(ag.Tensor(S)).data
    small_s = losses.style_layer_loss(ag.Tensor(F), A_small).item()
    big_s = losses.style_layer_loss(ag.Tensor(upsample2(F)), A_small).item()
    assert big_c == pytest.approx(small_c, rel=1e-12)
    assert big_s == pytest.approx(small_s, rel=1e-12)   # a style target of another size works
    assert small_s > 0


def test_style_loss_is_zero_against_itself_at_another_size():
    S = rng.standard_normal((1, 3, 4, 4))
    A_hat = losses.normalized_gram(ag.Tensor(S)).data
    loss = losses.style_layer_loss(ag.Tensor(upsample2(S)), A_hat).item()
    assert loss == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("loss", ["content", "style", "tv"])
def test_gradients_match_finite_differences(loss):
    x = rng.standard_normal((1, 3, 5, 4))
    target = {"content": rng.standard_normal(x.shape),
              "style": gram_np(rng.standard_normal(x.shape)) / 20}[loss] if loss != "tv" else None
    f = {"content": lambda t: losses.content_loss(t, target),
         "style": lambda t: losses.style_layer_loss(t, target),
         "tv": losses.tv_loss}[loss]
    analytic, numeric = directional_check(f, x)
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_style_layer_loss_refuses_a_target_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"style_layer_loss.*\(1, 3, 3\).*\(1, 4, 4\)"):
        losses.style_layer_loss(ag.Tensor(np.ones((1, 3, 2, 2))), np.ones((1, 4, 4)))


def test_layer_weights_are_scaled_to_sum_to_one():
    assert losses.layer_weights(["a", "b", "c", "d"]) == {k: 0.25 for k in "abcd"}
    w = losses.layer_weights(["a", "b"], [1, 3])
    assert w == pytest.approx({"a": 0.25, "b": 0.75})


@pytest.mark.parametrize("weights", [[1], [1, -1], [0, 0], [1, np.nan]])
def test_layer_weights_refuse_bad_values(weights):
    with pytest.raises(ValueError, match="layer_weights"):
        losses.layer_weights(["a", "b"], weights)


class TinyNet:
    """A stand-in for VGG-19 with two named layers, so these tests need no weights."""

    def __init__(self, seed=0):
        self.W = np.random.default_rng(seed).standard_normal((4, 3))
        self.calls = []

    def __call__(self, x, layers):
        self.calls.append(list(layers))
        N, C, H, W = x.shape
        flat = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)       # (N, C, H, W) -> (N*H*W, C)
        y = (flat @ self.W.T).reshape(N, H, W, 4).transpose(0, 3, 1, 2)  # -> (N, 4, H, W)
        return {"one": ag.relu(y), "two": y * y}


def test_style_targets_blend_normalised_grams_of_images_of_different_sizes():
    net = TinyNet()
    a, b = rng.standard_normal((1, 3, 4, 5)), rng.standard_normal((1, 3, 6, 3))
    t = losses.style_targets(net, [a, b], ["one", "two"], blend=[1, 3])
    for name in ("one", "two"):
        Fa, Fb = net(ag.Tensor(a), [name])[name].data, net(ag.Tensor(b), [name])[name].data
        expected = 0.25 * gram_np(Fa) / 20 + 0.75 * gram_np(Fb) / 18
        np.testing.assert_allclose(t[name], expected, rtol=1e-12)


def make_objective(x_shape, *, alpha=2.0, beta=3.0, gamma=0.5):
    net = TinyNet()
    content = losses.content_targets(net, rng.standard_normal(x_shape), ["two"])
    style = losses.style_targets(net, [rng.standard_normal((1, 3, 5, 5))], ["one", "two"])
    weights = losses.layer_weights(["one", "two"], [1, 2])
    return losses.Objective(net, content, style, weights, content_weight=alpha,
                            style_weight=beta, tv_weight=gamma)


def test_objective_total_is_the_weighted_sum_of_hand_computed_terms():
    x = rng.standard_normal((1, 3, 4, 6))
    obj = make_objective(x.shape)
    total, grad, parts = obj.value_and_grad(x)
    out = obj.net(ag.Tensor(x), ["one", "two"])
    c = 0.5 * np.sum((out["two"].data - obj.content["two"]) ** 2) / out["two"].size
    s = sum(w * np.sum((gram_np(out[k].data) / 24 - obj.style[k]) ** 2) / (4 * 16)
            for k, w in (("one", 1 / 3), ("two", 2 / 3)))
    tv = tv_np(x)
    assert parts["content"] == pytest.approx(2.0 * c, rel=1e-10)
    assert parts["style"] == pytest.approx(3.0 * s, rel=1e-10)
    assert parts["tv"] == pytest.approx(0.5 * tv, rel=1e-10)
    assert total == pytest.approx(parts["content"] + parts["style"] + parts["tv"], rel=1e-12)
    assert grad.shape == x.shape


def test_objective_runs_the_net_once_on_the_union_of_layers():
    obj = make_objective((1, 3, 4, 4))
    obj.net.calls.clear()
    obj.value_and_grad(rng.standard_normal((1, 3, 4, 4)))
    assert obj.net.calls == [["two", "one"]]


def test_objective_gradient_matches_finite_differences():
    x = rng.standard_normal((1, 3, 5, 4))
    obj = make_objective(x.shape)
    analytic, numeric = directional_check(lambda t: obj.terms(t)["total"], x)
    assert analytic == pytest.approx(numeric, rel=1e-6)
    assert obj.value_and_grad(x)[1] == pytest.approx(
        _grad_of(lambda t: obj.terms(t)["total"], x))


def _grad_of(f, x):
    xt = ag.Tensor(x, requires_grad=True)
    f(xt).backward()
    return xt.grad


def test_zero_weights_switch_terms_off():
    x = rng.standard_normal((1, 3, 4, 4))
    _, grad, parts = make_objective(x.shape, alpha=0.0, beta=0.0, gamma=1.0).value_and_grad(x)
    assert parts["content"] == 0 and parts["style"] == 0 and parts["tv"] > 0
    np.testing.assert_allclose(grad, _grad_of(losses.tv_loss, x), rtol=1e-12)
