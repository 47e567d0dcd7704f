"""minivgg.image: every Pillow mode read as rgb/alpha 0..255, one-sentence errors, atomic PNGs."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from minivgg.errors import UserError
from minivgg.image import (deprocess, preprocess, preserve_colors, read_image, resize_longest,
                           resize_to, rgb_to_yiq, save_png, yiq_to_rgb)

RNG = np.random.default_rng(0)
MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)


def png16(path, values, color_type):
    """Write a 16-bit PNG by hand (Pillow cannot): values (H, W[, C]) uint16, type 0/2/4/6."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    h, w = values.shape[:2]
    rows = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def one_sentence(message):
    return "\n" not in message and message.count(". ") == 0 and len(message) < 300


# ------------------------------------------------------------------------------------- modes
def test_rgb_png_round_trip_is_exact(tmp_path):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    rgb, alpha = read_image(tmp_path / "a.png")
    assert rgb.dtype == np.float32 and rgb.shape == (5, 7, 3) and alpha is None
    np.testing.assert_array_equal(rgb, pixels)


def test_grey_modes_are_replicated_to_three_channels(tmp_path):
    grey = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    Image.fromarray(grey > 127).save(tmp_path / "bits.png")          # mode "1"
    rgb, alpha = read_image(tmp_path / "l.png")
    np.testing.assert_array_equal(rgb, np.repeat(grey[:, :, None], 3, axis=2))
    bits, _ = read_image(tmp_path / "bits.png")
    np.testing.assert_array_equal(bits[:, :, 1], np.where(grey > 127, 255, 0))
    assert alpha is None


def test_la_and_rgba_keep_alpha(tmp_path):
    la = RNG.integers(0, 256, (3, 5, 2), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    rgb, alpha = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(rgb[:, :, 2], la[:, :, 0])
    np.testing.assert_array_equal(alpha, la[:, :, 1])
    rgb, alpha = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(rgb, rgba[:, :, :3])
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    assert alpha.dtype == np.float32


def test_palette_with_and_without_transparency(tmp_path):
    palette = [10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6)
    index = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    img.save(tmp_path / "pt.png", transparency=1)                   # colour 1 fully transparent
    rgb, alpha = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(rgb[0, 1], [200, 100, 50])
    assert alpha is None
    rgb, alpha = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(alpha, np.where(index == 1, 0, 255))
    np.testing.assert_array_equal(rgb[1, 1], [10, 20, 30])


def test_cmyk_jpeg_is_converted(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(tmp_path / "c.jpg", quality=100)
    rgb, alpha = read_image(tmp_path / "c.jpg")
    assert rgb.shape == (8, 8, 3) and alpha is None
    np.testing.assert_allclose(rgb.mean(axis=(0, 1)), [255, 0, 255], atol=3)   # magenta; JPEG


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = RNG.integers(0, 65536, (4, 5)).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    rgb, alpha = read_image(png16(tmp_path / "g16.png", values, color_type=0))
    np.testing.assert_allclose(rgb[:, :, 0], values / 257.0, rtol=1e-6, atol=1e-4)
    assert rgb[0, 1, 0] == pytest.approx(255.0) and alpha is None


def test_sixteen_bit_rgb_and_rgba_pngs(tmp_path):
    values = RNG.integers(0, 65536, (3, 4, 4)).astype(np.uint16)
    rgb, alpha = read_image(png16(tmp_path / "c16.png", values[:, :, :3], color_type=2))
    np.testing.assert_allclose(rgb, values[:, :, :3] / 257.0, atol=1.0)   # Pillow keeps 8 bits
    rgb, alpha = read_image(png16(tmp_path / "ca16.png", values, color_type=6))
    np.testing.assert_allclose(alpha, values[:, :, 3] / 257.0, atol=1.0)


def test_mode_i_and_f_tiffs(tmp_path):
    wide = np.array([[0, 1000, 65535]], dtype=np.int32)
    small = np.array([[0, 17, 255]], dtype=np.int32)
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    for name, a in [("wide", wide), ("small", small), ("unit", unit)]:
        Image.fromarray(a).save(tmp_path / f"{name}.tif")
    np.testing.assert_allclose(read_image(tmp_path / "wide.tif")[0][0, :, 1],
                               [0, 1000 / 257.0, 255], rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "small.tif")[0][0, :, 0], [0, 17, 255])
    np.testing.assert_allclose(read_image(tmp_path / "unit.tif")[0][0, :, 2], [0, 127.5, 255])


def test_exif_orientation_is_applied(tmp_path):
    pixels = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6                                    # "rotate 90 degrees clockwise to view"
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    rgb, _ = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(rgb, np.rot90(pixels, k=-1))      # (2, 3) -> (3, 2)


# ------------------------------------------------------------------------------------ errors
def assert_user_error(path, *words):
    with pytest.raises(UserError) as info:
        read_image(path)
    message = str(info.value)
    assert one_sentence(message), message
    for word in words:
        assert word in message, message
    return message


def test_missing_file_and_folder(tmp_path):
    assert_user_error(tmp_path / "nope.jpg", "does not exist", "nope.jpg")
    assert_user_error(tmp_path, "folder")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello, I am not a JPEG\n")
    assert_user_error(tmp_path / "notes.jpg", "not an image")


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_file_is_refused_and_left_untouched(tmp_path, fmt):
    pixels = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / f"whole.{fmt}"
    Image.fromarray(pixels).save(whole, format=fmt)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    before = (cut.read_bytes(), cut.stat().st_mtime_ns)
    assert_user_error(cut, "truncated")
    assert (cut.read_bytes(), cut.stat().st_mtime_ns) == before


@pytest.mark.parametrize("side, kind", [(15, "error"), (11, "warning")])
def test_decompression_bomb_error_and_warning(tmp_path, monkeypatch, side, kind):
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; 100 makes 121 warn and 225
    # fail, so the test needs no 90-megapixel file.
    Image.new("RGB", (side, side)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert_user_error(tmp_path / "big.png", "downscale")


# ---------------------------------------------------------------------------------- resizing
@pytest.mark.parametrize("shape, size, expected", [((40, 60, 3), 30, (20, 30, 3)),
                                                  ((60, 40, 3), 30, (30, 20, 3)),
                                                  ((7, 7), 16, (16, 16)),
                                                  ((300, 2, 3), 10, (10, 1, 3))])
def test_resize_longest_shapes(shape, size, expected):
    out = resize_longest(np.full(shape, 100.25, np.float32), size)
    assert out.shape == expected and out.dtype == np.float32
    np.testing.assert_allclose(out, 100.25, atol=1e-3)     # float data: no rounding to 8 bits


def test_resize_keeps_a_smooth_ramp_and_clips_ringing():
    ramp = np.linspace(0, 255, 64, dtype=np.float32)[None, :, None] * np.ones((16, 1, 3))
    out = resize_to(ramp, (8, 32))
    np.testing.assert_allclose(out[4, 8:24, 0], np.linspace(0, 255, 32)[8:24], atol=4.0)
    step = np.zeros((20, 20), np.float32)
    step[:, 10:] = 255.0
    out = resize_to(step, (33, 33))                          # Lanczos rings at the edge
    assert out.min() >= 0.0 and out.max() <= 255.0
    with pytest.raises(ValueError, match="resize_longest"):
        resize_longest(step, 0)


# ----------------------------------------------------------------------------------- writing
def test_save_png_rounds_clips_and_round_trips_alpha(tmp_path):
    rgb = np.array([[[1.4, 1.6, -5.0], [300.0, 254.6, np.nan]]], dtype=np.float32)
    alpha = np.array([[0.2, 254.9]], dtype=np.float32)
    path = save_png(tmp_path / "out.png", rgb, alpha)
    back, back_alpha = read_image(path)
    np.testing.assert_array_equal(back, [[[1, 2, 0], [255, 255, 0]]])
    np.testing.assert_array_equal(back_alpha, [[0, 255]])
    assert Image.open(save_png(tmp_path / "o.png", rgb)).mode == "RGB"


def test_save_png_is_deterministic_and_respects_umask(tmp_path):
    rgb = RNG.uniform(0, 255, (9, 11, 3))
    a, b = save_png(tmp_path / "a.png", rgb), save_png(tmp_path / "b.png", rgb)
    assert a.read_bytes() == b.read_bytes()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (a.stat().st_mode & 0o777) == 0o666 & ~umask


def test_save_png_crash_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = save_png(tmp_path / "out.png", np.zeros((4, 4, 3)))
    old = target.read_bytes()

    def crash(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_png(target, np.full((4, 4, 3), 255.0))
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_save_png_shape_errors(tmp_path):
    with pytest.raises(ValueError, match="save_png"):
        save_png(tmp_path / "x.png", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="alpha"):
        save_png(tmp_path / "x.png", np.zeros((4, 4, 3)), np.zeros((4, 5)))
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------- network input/output
def test_preprocess_layout_and_mean(xp):
    rgb = RNG.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    x = preprocess(rgb, MEAN)
    assert x.shape == (1, 3, 5, 7) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 1, 2, 3], rgb[2, 3, 1] - MEAN[1], rtol=1e-6)
    back = deprocess(xp.asarray(x), MEAN)                    # NumPy or CuPy in, NumPy out
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_allclose(back, rgb, atol=1e-4)
    with pytest.raises(ValueError, match="preprocess"):
        preprocess(rgb[:, :, :2], MEAN)


def test_deprocess_clips_and_checks_shape():
    x = np.full((1, 3, 2, 2), 500.0, np.float32)
    x[0, 0] = -500.0
    rgb = deprocess(x, MEAN)
    assert rgb[..., 0].max() == 0.0 and rgb[..., 1].min() == 255.0
    with pytest.raises(ValueError, match="deprocess"):
        deprocess(np.zeros((3, 2, 2)), MEAN)


def test_yiq_round_trip_and_luma_weights():
    rgb = RNG.uniform(0, 255, (3, 4, 3))
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-3)
    assert rgb_to_yiq(np.array([255.0, 0, 0]))[0] == pytest.approx(0.299 * 255, rel=1e-6)


def test_preserve_colors_takes_luma_from_stylized_and_chroma_from_content():
    content = RNG.uniform(60, 190, (6, 8, 3))
    stylized = RNG.uniform(60, 190, (6, 8, 3))
    out = preserve_colors(content, stylized)
    assert out.shape == (6, 8, 3) and out.dtype == np.float32
    yiq_out, yiq_c, yiq_s = rgb_to_yiq(out), rgb_to_yiq(content), rgb_to_yiq(stylized)
    np.testing.assert_allclose(yiq_out[..., 0], yiq_s[..., 0], atol=1e-3)
    np.testing.assert_allclose(yiq_out[..., 1:], yiq_c[..., 1:], atol=1e-3)
    grey = preserve_colors(np.full((2, 2, 3), 128.0), stylized[:2, :2])
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)   # grey content stays grey
    with pytest.raises(ValueError, match="preserve_colors"):
        preserve_colors(content, stylized[:5])
