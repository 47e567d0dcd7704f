"""--match-colors: the style recoloured to the content's RGB mean and covariance before the run."""
import numpy as np
import pytest
from PIL import Image

import minivgg
from minivgg import image
from minivgg.stylize.options import Options, validate
from test_stylize_options import refused
from test_stylize_run import pixels, run


def mid_range(shape, seed, mix):
    """An rgb image of correlated channels that stays well inside 0..255 (no clipping)."""
    noise = np.random.default_rng(seed).standard_normal((*shape, 3))
    return (128 + 20 * noise @ np.asarray(mix)).astype(np.float32)   # (H, W, 3) @ (3, 3)


def stats(rgb):
    flat = np.asarray(rgb, np.float64).reshape(-1, 3)                # (H, W, 3) -> (P, 3)
    return flat.mean(axis=0), np.cov(flat, rowvar=False, bias=True)


def test_the_result_has_the_contents_mean_and_covariance():
    style = mid_range((30, 40), 0, [[1, 0.5, 0], [0, 1, 0.2], [0, 0, 0.6]])
    content = mid_range((20, 25), 1, [[0.4, 0, 0.3], [0.2, 1.2, 0], [0, 0.3, 1]]) + [10, -5, 0]
    out = image.match_colors(style, content)
    assert out.shape == style.shape and out.dtype == np.float32
    (mu_o, cov_o), (mu_c, cov_c) = stats(out), stats(content)
    np.testing.assert_allclose(mu_o, mu_c, atol=1e-3)
    # the style's covariance got 1 level^2 on its diagonal, so the match is that close, not exact
    np.testing.assert_allclose(cov_o, cov_c, rtol=0.01, atol=0.5)


def test_reordering_the_channels_reorders_the_result():
    """The symmetric roots do not depend on how RGB is written down; Cholesky factors do."""
    style = mid_range((16, 16), 2, [[1, 0.8, 0.1], [0, 1, 0.7], [0.3, 0, 1]])
    content = mid_range((16, 16), 3, [[1, 0, 0.9], [0.5, 0.6, 0], [0, 0.2, 1]])
    bgr = [2, 1, 0]
    out = image.match_colors(style, content)
    out_bgr = image.match_colors(style[:, :, bgr], content[:, :, bgr])
    np.testing.assert_allclose(out_bgr, out[:, :, bgr], atol=1e-3)

    def cholesky_match(s, c):
        (mu_s, cov_s), (mu_c, cov_c) = stats(s), stats(c)
        A = np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
        return (s.reshape(-1, 3) - mu_s) @ A.T + mu_c             # (P, 3) @ (3, 3)

    chol, chol_bgr = cholesky_match(style, content), cholesky_match(style[:, :, bgr],
                                                                   content[:, :, bgr])
    assert np.abs(chol_bgr - chol[:, bgr]).max() > 1.0


@pytest.mark.parametrize("style", [np.full((8, 8, 3), 90.0), np.repeat(
    np.linspace(0, 255, 64).reshape(8, 8, 1), 3, axis=2)], ids=["flat", "grey"])
def test_a_style_with_few_colours_is_recoloured_without_nan(style):
    content = mid_range((8, 8), 4, np.eye(3)) + [40, 0, -30]
    out = image.match_colors(style, content)
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 255
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), stats(content)[0], atol=1.5)


def test_match_colors_and_preserve_colors_are_refused_together(capsys, images, tmp_path):
    line = refused(capsys, [*images, "--match-colors", "--preserve-colors"], tmp_path)
    assert "--match-colors and --preserve-colors" in line and "choose one" in line
    with pytest.raises(minivgg.errors.UserError, match="choose one"):
        validate(Options(demo=True, match_colors=True, preserve_colors=True))


def test_a_run_with_match_colors_is_a_run_on_the_recoloured_style(tiny_mat, images, tmp_path):
    content, style = images
    assert run(tiny_mat, images, "--match-colors", "-o", "m.png") == 0
    assert run(tiny_mat, images, "-o", "plain.png") == 0
    rgb = lambda p: np.asarray(Image.open(p).convert("RGB"), np.float32)   # noqa: E731
    working = image.resize_to(rgb(content), (24, 32))           # the content at --size 32
    recoloured = image.match_colors(rgb(style), working)        # the style is 32x32 already
    Image.fromarray(np.rint(recoloured).astype(np.uint8)).save(tmp_path / "recoloured.png")
    assert run(tiny_mat, (content, tmp_path / "recoloured.png"), "-o", "by_hand.png") == 0
    m, by_hand, plain = (pixels(tmp_path / p).astype(float) for p in
                         ("m.png", "by_hand.png", "plain.png"))
    assert np.abs(m - by_hand).mean() < 0.5 < np.abs(m - plain).mean()


def test_the_style_init_is_the_recoloured_style(tiny_mat, images, tmp_path):
    content, style = images
    one = ["--optimizer", "adam", "--learning-rate", "0.001"]     # a tiny step: stays at the init
    assert run(tiny_mat, images, "--init", "style", "--match-colors", "-o", "i.png", *one,
               iterations=1) == 0
    rgb = lambda p: np.asarray(Image.open(p).convert("RGB"), np.float32)   # noqa: E731
    expected = image.resize_to(image.match_colors(image.resize_longest(rgb(style), 32),
                                                  image.resize_longest(rgb(content), 32)),
                               (24, 32))
    assert np.abs(pixels(tmp_path / "i.png") - expected).mean() < 1.5
