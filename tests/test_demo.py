"""minivgg.demo: the built-in images are deterministic, sized as promised, and look the part."""
import numpy as np
import pytest

from minivgg.demo import demo_content, demo_style
from minivgg.image import resize_to


@pytest.mark.parametrize("make, shape", [(demo_content, (48, 64, 3)), (demo_style, (64, 64, 3))])
def test_shape_range_and_determinism(make, shape):
    a, b = make(64), make(64)
    assert a.shape == shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 255.0
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [demo_content, demo_style])
def test_default_size_and_bad_sizes(make):
    assert max(make().shape[:2]) == 256
    for bad in (0, 8, 64.0, True):
        with pytest.raises(ValueError, match="demo"):
            make(bad)


@pytest.mark.parametrize("make, tolerance", [(demo_content, 6.0), (demo_style, 22.0)])
def test_drawn_at_any_size_the_picture_is_the_same(make, tolerance):
    # Shapes are laid out in units of the image size, so a big image shrunk to a small one looks
    # like the small one; the painting's strokes are random in detail, hence its wider tolerance.
    small, big = make(64), make(128)
    shrunk = resize_to(big, small.shape[:2])
    difference = np.abs(shrunk - small).mean()
    assert difference < tolerance
    assert np.abs(small[::-1] - small).mean() > 2 * difference  # the check tells pictures apart


def test_content_has_sky_above_grass_and_a_red_roof():
    img = demo_content(128)
    top, bottom = img[:10].mean(axis=(0, 1)), img[-10:].mean(axis=(0, 1))
    assert top[2] > top[1] > top[0]                             # blue sky
    assert bottom[1] > bottom[0] and bottom[1] > bottom[2]      # green grass
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    yellow = (img[..., 0] > 230) & (img[..., 1] > 190) & (img[..., 2] < 150)
    assert red.mean() > 0.01 and yellow.mean() > 0.005          # the roof and the sun


def test_style_has_strong_colours_and_stroke_texture():
    img = demo_style(128)
    blue = (img[..., 2] > img[..., 0] + 60)
    yellow = (img[..., 0] > 180) & (img[..., 1] > 160) & (img[..., 2] < 150)
    assert blue.mean() > 0.4 and yellow.mean() > 0.01
    grey = img.mean(axis=2)
    fine = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    smooth = resize_to(resize_to(img, (32, 32)), (128, 128)).mean(axis=2)
    coarse = np.abs(np.diff(smooth, axis=0)).mean() + np.abs(np.diff(smooth, axis=1)).mean()
    assert fine > 1.7 * coarse     # strokes: detail a blur removes (a smooth picture gives ~1)
