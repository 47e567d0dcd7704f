"""The matrix square root op and the mean-covariance (Wasserstein-2) style loss, from the op's
backward to ``--style-loss meancov`` on the command line."""
import numpy as np
import pytest

import miniautograd as ag
import minivgg
from minivgg import losses
from minivgg.meancov import MEANCOV_EPS, meancov_layer_loss, meancov_target
from minivgg.stylize.__main__ import main
from minivgg.stylize.options import DEFAULT_STYLE_WEIGHTS, Options, build_parser, validate
from test_stylize_options import refused
from test_stylize_run import read_log, run


def spd(N, C, *, rank=None, seed=0):
    """(N, C, C) symmetric PSD matrices of the given rank (full when None)."""
    B = np.random.default_rng(seed).standard_normal((N, C, rank or C + 2))
    return B @ B.swapaxes(1, 2)                            # (N, C, r) @ (N, r, C)


# -- the op ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [None, 2])
def test_sqrtm_psd_is_the_symmetric_psd_root(rank):
    A = spd(2, 5, rank=rank)
    S = ag.sqrtm_psd(A).data
    np.testing.assert_allclose(S @ S, A, atol=1e-10)
    np.testing.assert_allclose(S, S.swapaxes(1, 2), atol=1e-12)
    assert np.linalg.eigvalsh(S).min() > -1e-7              # the PSD root, not another one


def test_sqrtm_psd_keeps_float32_and_refuses_a_non_square_batch():
    S = ag.sqrtm_psd(spd(1, 4).astype(np.float32))
    assert S.dtype == np.float32
    with pytest.raises(ValueError, match=r"must have shape \(N, C, C\)"):
        ag.sqrtm_psd(np.ones((3, 4)))


class RootWithScalarRule(ag.sqrtm.SqrtmPSD):
    """The tempting matrix form of d sqrt(a) = da / (2 sqrt(a)): gA = gS S^-1 / 2, that is
    dividing by 2 s_j instead of s_i + s_j. It is right on the diagonal of the eigenbasis only."""

    def backward(self, gS):
        U, s = self.U, self.s
        g_rot = U.swapaxes(1, 2) @ ((gS + gS.swapaxes(1, 2)) / 2) @ U
        return (U @ (g_rot / (2 * s[:, None, :])) @ U.swapaxes(1, 2),)


def test_gradcheck_accepts_the_derived_backward_and_rejects_the_scalar_rule():
    A = spd(2, 4) / 6 + 0.2 * np.eye(4)
    assert ag.gradcheck(ag.sqrtm_psd, A)
    assert not ag.gradcheck(lambda a: RootWithScalarRule()(a), A)
    # with gS = I (the trace) the two agree: only the diagonal of the eigenbasis is used
    trace_gy = np.broadcast_to(np.eye(4), A.shape)
    assert ag.gradcheck(lambda a: RootWithScalarRule()(a), A, gy=trace_gy)


def test_backward_stays_finite_at_a_singular_matrix():
    A = ag.Tensor(spd(1, 5, rank=2), requires_grad=True)
    ag.sum(ag.sqrtm_psd(A)).backward()
    assert np.all(np.isfinite(A.grad))


def test_cast_changes_the_dtype_and_casts_the_gradient_back():
    x = ag.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = ag.cast(x, np.float64)
    assert y.dtype == np.float64
    ag.sum(y * 3.0).backward()
    assert x.grad.dtype == np.float32 and np.all(x.grad == 3)


# -- the loss -------------------------------------------------------------------------------------
def target_of(F):
    """MeanCovTarget of a response array F (1, C, H, W)."""
    N, C, H, W = F.shape
    mu = F.reshape(N, C, H * W).mean(axis=2, keepdims=True)    # (N, C, H*W) -> (N, C, 1)
    return meancov_target(mu, losses.normalized_gram(ag.Tensor(F)).data)


def test_the_loss_is_zero_at_the_style_and_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(2)
    Fs = rng.standard_normal((1, 3, 4, 6)) * np.array([1.0, 2.0, 0.5])[None, :, None, None] + 1
    t = target_of(Fs)
    assert abs(meancov_layer_loss(ag.Tensor(Fs), t).item()) < 1e-9
    # channels on disjoint positions, each of mean 0: a diagonal covariance; x = 2 * that + 0.5
    Fd = np.zeros((1, 3, 1, 6))
    Fd[0, :, 0, :] = [[3, -3, 0, 0, 0, 0], [0, 0, 2, -2, 0, 0], [0, 0, 0, 0, 1, -1]]
    Fx = 2.0 * Fd + 0.5                                         # mean 0.5, variances x4
    td = target_of(Fd)
    var_s = (Fd[0, :, 0, :] ** 2).mean(axis=1)
    var_x = 4 * var_s
    eps = MEANCOV_EPS * var_s.sum() / 3
    expected = (3 * 0.25 + np.sum((np.sqrt(var_x + eps) - np.sqrt(var_s + eps)) ** 2)) / 3
    assert td.eps == pytest.approx(eps)
    assert meancov_layer_loss(ag.Tensor(Fx), td).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", [(1, 4, 3, 5), (1, 6, 2, 2)], ids=["C<M", "C>M"])
def test_the_loss_passes_the_gradient_check(shape):
    rng = np.random.default_rng(3)
    t = target_of(rng.standard_normal(shape) + 1.0)
    assert ag.gradcheck(lambda F: meancov_layer_loss(F, t), rng.standard_normal(shape))


def test_the_loss_keeps_float32_features_in_float32():
    rng = np.random.default_rng(4)
    Fs, Fx = (rng.standard_normal((1, 8, 3, 2)).astype(np.float32) for _ in "sx")
    x = ag.Tensor(Fx, requires_grad=True)
    L = meancov_layer_loss(x, target_of(Fs))
    L.backward()
    assert L.dtype == np.float32 and x.grad.dtype == np.float32


class Identity:
    """A stand-in network whose response at every layer is the image itself."""

    def __call__(self, x, layers):
        return {name: x for name in layers}


def test_several_styles_blend_moments_like_pooling_their_pixels():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((1, 3, 4, 5)) + 2, rng.standard_normal((1, 3, 4, 5)) - 1
    blended = losses.style_targets(Identity(), [a, b], ["x"], loss="meancov")["x"]
    pooled = target_of(np.concatenate([a, b], axis=3))           # the 40 pixels of both
    np.testing.assert_allclose(blended.mean, pooled.mean, atol=1e-12)
    np.testing.assert_allclose(blended.root, pooled.root, atol=1e-10)
    only_a = losses.style_targets(Identity(), [a, b], ["x"], blend=[1, 0], loss="meancov")["x"]
    np.testing.assert_allclose(only_a.root, target_of(a).root, atol=1e-12)


# -- the program ----------------------------------------------------------------------------------
def test_the_default_style_weight_follows_the_loss():
    assert validate(Options(demo=True)).style_weight == DEFAULT_STYLE_WEIGHTS["gram"]
    opts = validate(Options(demo=True, style_loss="meancov"))
    assert opts.style_weight == DEFAULT_STYLE_WEIGHTS["meancov"]
    assert validate(Options(demo=True, style_loss="meancov", style_weight=2.0)).style_weight == 2
    text = build_parser().format_help()
    assert "--style-loss" in text and "meancov" in text


def test_a_bad_style_loss_is_refused(capsys, images, tmp_path):
    line = refused(capsys, [*images, "--style-loss", "wasserstein"], tmp_path)
    assert "--style-loss must be one of gram, meancov" in line
    with pytest.raises(minivgg.errors.UserError, match="--style-loss must be one of"):
        minivgg.stylize(*images, style_loss="W2")


def test_a_meancov_run_lowers_its_loss_and_differs_from_gram(tiny_mat, images, tmp_path):
    assert run(tiny_mat, images, "--style-loss", "meancov", "--init", "noise", "--log",
               "m.csv", "-o", "m.png", iterations=6) == 0
    rows = [[float(v) for v in r] for r in read_log(tmp_path / "m.csv")[1:]]
    assert rows[-1][1] < rows[0][1] and rows[-1][3] < rows[0][3]     # total, style
    img = minivgg.stylize(*images, weights=str(tiny_mat), size=32, iterations=2, quiet=True,
                          style_loss="meancov", init="noise")
    gram = minivgg.stylize(*images, weights=str(tiny_mat), size=32, iterations=2, quiet=True,
                           init="noise")
    assert not np.array_equal(np.asarray(img), np.asarray(gram))
    assert main([str(a) for a in [*images, "--weights", tiny_mat, "--size", 32, "--style-loss",
                                  "meancov", "--explain", "--quiet"]]) == 0


def test_the_op_and_the_loss_follow_the_data_to_the_device(xp):
    """The same numbers on NumPy and CuPy (skipped where no GPU is present)."""
    A = spd(2, 5) / 7 + 0.1 * np.eye(5)
    At = ag.Tensor(xp.asarray(A), requires_grad=True)
    ag.sum(ag.sqrtm_psd(At) * xp.asarray(A)).backward()
    ref = ag.Tensor(A, requires_grad=True)
    ag.sum(ag.sqrtm_psd(ref) * A).backward()
    np.testing.assert_allclose(ag.to_cpu(At.grad), ref.grad, rtol=1e-9, atol=1e-12)
    rng = np.random.default_rng(6)
    Fs, Fx = (rng.standard_normal((1, 6, 3, 4)).astype(np.float32) for _ in "sx")
    t_np = target_of(Fs)
    t_xp = meancov_target(xp.asarray(t_np.mean), xp.asarray(
        losses.normalized_gram(ag.Tensor(Fs)).data))
    on_device = meancov_layer_loss(ag.Tensor(xp.asarray(Fx)), t_xp).item()
    assert on_device == pytest.approx(meancov_layer_loss(ag.Tensor(Fx), t_np).item(), rel=1e-5)
