"""Reading, resizing and writing images, and the conversions between pixels and network inputs.

Conventions used everywhere in minivgg:
  rgb    float32 array (H, W, 3), values 0..255 (not 0..1), rows top to bottom
  alpha  float32 array (H, W), values 0..255 (255 = opaque), or None for an opaque image
  x      the network input, float32 (1, 3, H, W): rgb minus the net's mean pixel, channels first

Reading converts every Pillow mode to that form (see ``read_image``) and turns each way a file can
be unusable into one ``UserError`` sentence. Writing is atomic: the PNG goes to a temporary file in
the same folder and is renamed over the target, so a crash or Ctrl-C never leaves half a PNG.
"""
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from miniautograd import to_cpu

from .errors import UserError
from .files import atomic_write


# --------------------------------------------------------------------------------------- reading
def read_image(path):
    """Read an image file as ``(rgb, alpha)``: float32 (H, W, 3) and (H, W) or None, both 0..255.

    EXIF orientation is applied (a phone photo comes out upright). Modes are converted, never
    refused: 1, L, P, CMYK, YCbCr... become RGB; LA, PA, P with a transparent colour and RGBA keep
    their alpha. Deeper-than-8-bit data is scaled to 0..255: I;16 (16-bit grey, as in 16-bit PNGs)
    by 255/65535; mode I by 1 if its values fit 0..255, by 255/65535 if they fit 0..65535,
    else min..max is stretched to 0..255; mode F as 0..1 if its values fit there, else clipped to
    0..255. (16-bit RGB PNGs reach us already reduced to 8 bits by Pillow.) The file is only read.

    Raises ``UserError`` for a missing file, a folder, a file that is not an image, a truncated
    or corrupt image, and an image so large that Pillow flags it as a decompression bomb.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"the image '{path}' does not exist; check the path and its spelling")
    if path.is_dir():
        raise UserError(f"'{path}' is a folder, not an image; give the path of an image file")
    img = _open_fully(path)
    try:
        return _to_rgb_alpha(img)
    except ValueError:                                  # a mode Pillow cannot convert, e.g. LAB
        raise UserError(f"'{path}' uses the colour mode {img.mode}, which cannot be converted "
                        "to RGB; save it as an RGB PNG or JPEG first") from None


def read_source(source, what):
    """(rgb, alpha) of a path, a PIL image or an (H, W), (H, W, 3) or (H, W, 4) array, 0..255:
    what the program and ``minivgg.stylize(...)`` accept for every picture. ``what`` names it in
    the UserError sentence."""
    if isinstance(source, (str, Path)):
        return read_image(source)
    if isinstance(source, Image.Image):
        rgba = source.mode in ("RGBA", "LA", "PA") or "transparency" in source.info
        source = np.asarray(source.convert("RGBA" if rgba else "RGB"))
    a = np.asarray(source, dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)              # (H, W) -> (H, W, 3)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or not np.all(np.isfinite(a)):
        raise UserError(f"the {what} must be a path, a PIL image or an (H, W) or (H, W, 3) "
                        f"array of values 0..255; got an array of shape {a.shape}")
    return np.clip(a[:, :, :3], 0, 255), (np.clip(a[:, :, 3], 0, 255) if a.shape[2] == 4 else None)


def _open_fully(path):
    """Open and decode the whole file (Pillow is lazy), turning every failure into a UserError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)   # the warning too
        try:
            with Image.open(path) as img:
                img.load()                           # decode now: truncation shows up only here
                return ImageOps.exif_transpose(img)  # a new, upright, fully loaded image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UserError(f"'{path}' has so many pixels that Pillow refuses it as a possible "
                            "decompression bomb; downscale the image first, for example to "
                            "4000 px on its longest side") from None
        except UnidentifiedImageError:
            raise UserError(f"'{path}' is not an image Pillow can read; give a PNG, JPEG or "
                            "another common image file") from None
        except PermissionError:
            raise UserError(f"'{path}' cannot be read (permission denied); check the file's "
                            "permissions") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise UserError(f"'{path}' is truncated or corrupt ({_brief(exc)}); re-download or "
                            "re-export the image") from None


def _brief(exc):
    """An exception's message as a short clause: its first line, no final full stop."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].rstrip(".")[:120]


def _to_rgb_alpha(img):
    """Any Pillow image -> (rgb float32 (H, W, 3), alpha float32 (H, W) or None), 0..255."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _deep_grey(np.asarray(img), mode)
        return np.repeat(grey[:, :, None], 3, axis=2), None     # (H, W) -> (H, W, 3)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return np.asarray(img.convert("RGB"), dtype=np.float32), None
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)   # (H, W, 4)
    return rgba[:, :, :3].copy(), rgba[:, :, 3].copy()


def _deep_grey(a, mode):
    """A 16-bit, 32-bit integer or float grey array (H, W) scaled to float32 0..255."""
    a = a.astype(np.float64)
    if mode.startswith("I;16"):
        a = a * (255.0 / 65535.0)
    elif mode == "F":
        a = a * 255.0 if a.size and a.min() >= 0.0 and a.max() <= 1.0 else a
    elif a.size and a.min() >= 0 and a.max() > 255:
        top = 65535.0 if a.max() <= 65535 else a.max()
        a = a * (255.0 / top)
    elif a.size and a.min() < 0:
        a = (a - a.min()) * (255.0 / max(a.max() - a.min(), 1.0))
    return np.clip(np.nan_to_num(a), 0.0, 255.0).astype(np.float32)


# -------------------------------------------------------------------------------------- resizing
def resize_longest(rgb, size):
    """Resize (H, W, 3) or (H, W) so that its longest side is ``size``, keeping the aspect ratio.

    The other side is ``round(side * size / longest)``, at least 1. Lanczos, see ``resize_to``.
    """
    return resize_to(rgb, longest_shape(rgb.shape[:2], size))


def longest_shape(shape, size):
    """The (H', W') that ``resize_longest`` gives an (H, W) image: no pixel is touched, so a run
    can check a size (memory, the network's depth) before it allocates the resized image."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"resize_longest: size must be a positive integer, got {size!r}")
    h, w = shape
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_to(array, shape):
    """Resize rgb (H, W, 3) or alpha (H, W) to ``shape = (H', W')`` with Lanczos, on float data.

    Each channel is resized as a Pillow mode "F" (float32) image, so nothing is rounded to 8 bits
    on the way. Lanczos overshoots at sharp edges; the result is clipped back to 0..255.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ValueError(f"resize_to: expected an (H, W) or (H, W, C) image, got {array.shape}")
    out_h, out_w = (int(n) for n in shape)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_to: the target shape must be positive, got {tuple(shape)}")
    if array.shape[:2] == (out_h, out_w):
        return array.copy()
    if array.ndim == 2:
        return _resize_channel(array, out_h, out_w)
    channels = [_resize_channel(array[:, :, c], out_h, out_w) for c in range(array.shape[2])]
    return np.stack(channels, axis=2)                            # C x (H', W') -> (H', W', C)


def _resize_channel(channel, out_h, out_w):
    """One float32 (H, W) channel -> (H', W') by Lanczos, clipped to 0..255."""
    img = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))   # mode "F"
    img = img.resize((out_w, out_h), Image.Resampling.LANCZOS)               # Pillow wants (W, H)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 255.0)


# --------------------------------------------------------------------------------------- writing
def save_png(path, rgb, alpha=None):
    """Write rgb (H, W, 3) and optional alpha (H, W) as an 8-bit RGB or RGBA PNG, atomically.

    Values are clipped to 0..255 and rounded to the nearest integer (NaN becomes 0). The PNG is
    written to a temporary file beside ``path`` and renamed over it with ``os.replace``, so
    readers see either the old file or the complete new one. The same arrays give the same bytes.
    Returns ``path`` as a ``Path``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_png: rgb must have shape (H, W, 3), got {rgb.shape}")
    pixels = _to_uint8(rgb)
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"save_png: alpha of shape {alpha.shape} does not match rgb of "
                             f"shape {rgb.shape}; it must be (H, W)")
        pixels = np.concatenate([pixels, _to_uint8(alpha)[:, :, None]], axis=2)  # (H, W, 4)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    return atomic_write(path, png.getvalue())


def _to_uint8(a):
    """Clip to 0..255, round half to even, uint8; NaN becomes 0."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(a, 0.0, 255.0)).astype(np.uint8)


# ------------------------------------------------------------------------- network input/output
def preprocess(rgb, mean):
    """rgb (H, W, 3) 0..255 -> network input x (1, 3, H, W) float32, x = rgb - mean (per channel).

    ``mean`` is the net's mean pixel, shape (3,), in RGB order. Always returns a NumPy array.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"preprocess: rgb must have shape (H, W, 3), got {rgb.shape}")
    if mean.shape != (3,):
        raise ValueError(f"preprocess: mean must have shape (3,), got {mean.shape}")
    x = (rgb - mean).transpose(2, 0, 1)                          # (H, W, 3) -> (3, H, W)
    return np.ascontiguousarray(x[None])                         # (3, H, W) -> (1, 3, H, W)


def deprocess(x, mean):
    """Network input x (1, 3, H, W), NumPy or CuPy -> NumPy rgb (H, W, 3) float32 clipped to 0..255.

    The inverse of ``preprocess``: adds the mean pixel back, then clips.
    """
    x = to_cpu(x)
    mean = np.asarray(mean, dtype=np.float32)
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"deprocess: x must have shape (1, 3, H, W), got {x.shape}")
    if mean.shape != (3,):
        raise ValueError(f"deprocess: mean must have shape (3,), got {mean.shape}")
    rgb = x[0].astype(np.float32).transpose(1, 2, 0) + mean      # (3, H, W) -> (H, W, 3)
    return np.clip(rgb, 0.0, 255.0)


# --------------------------------------------------------------------------------------- colours
# YIQ (NTSC 1953, FCC): Y is luma; I and Q carry the colour. Rows map RGB to Y, I, Q.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(rgb):
    """rgb (..., 3) -> yiq (..., 3) float32; Y = 0.299 R + 0.587 G + 0.114 B, in 0..255 for rgb."""
    return (np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(yiq):
    """yiq (..., 3) -> rgb (..., 3) float32 (not clipped); the exact inverse of ``rgb_to_yiq``."""
    return (np.asarray(yiq, dtype=np.float64) @ _YIQ_TO_RGB.T).astype(np.float32)


def preserve_colors(content_rgb, stylized_rgb):
    """Luminance-only transfer (Gatys et al. 2016, "Preserving colour in neural artistic style
    transfer"): the stylized image's luma Y with the content image's chroma I, Q, in YIQ space.

    Both (H, W, 3) 0..255 of the same shape; returns rgb (H, W, 3) float32 clipped to 0..255.
    """
    content_rgb, stylized_rgb = np.asarray(content_rgb), np.asarray(stylized_rgb)
    if content_rgb.shape != stylized_rgb.shape or content_rgb.ndim != 3 \
            or content_rgb.shape[2] != 3:
        raise ValueError(f"preserve_colors: content {content_rgb.shape} and stylized "
                         f"{stylized_rgb.shape} must both be (H, W, 3) of the same size")
    yiq = rgb_to_yiq(content_rgb)
    yiq[:, :, 0] = rgb_to_yiq(stylized_rgb)[:, :, 0]            # luma from the stylized image
    return np.clip(yiq_to_rgb(yiq), 0.0, 255.0)


def match_colors(style_rgb, content_rgb):
    """The style image recoloured so that its pixels have the content's RGB mean and covariance
    (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer", section 5).

    Each pixel x (an RGB column) becomes x' = A (x - mu_s) + mu_c with A = C_c^1/2 C_s^-1/2, the
    symmetric square roots of the covariances: then mean(x') = mu_c and A C_s A^T = C_c. Any
    A = C_c^1/2 Q C_s^-1/2 with Q orthogonal does that too; the Cholesky factors, A = L_c L_s^-1,
    pick a Q that depends on the order of the channels (Cholesky takes R first, then G given R,
    then B given both), so BGR and RGB give different pictures. The symmetric roots pick Q = I:
    rotating or reordering the colour axes of both images rotates the result the same way, and
    nothing depends on how RGB is written down. C_s gets 1 level^2 added on its diagonal so that
    a style with too few colours (a grey or flat image) can be inverted. Shapes: style (Hs, Ws, 3)
    and content (H, W, 3), 0..255; returns (Hs, Ws, 3) float32 clipped to 0..255.
    """
    style = np.asarray(style_rgb, dtype=np.float64).reshape(-1, 3)      # (Hs, Ws, 3) -> (P, 3)
    content = np.asarray(content_rgb, dtype=np.float64).reshape(-1, 3)  # (H, W, 3) -> (P', 3)
    mu_s, mu_c = style.mean(axis=0), content.mean(axis=0)
    cov_s = np.cov(style, rowvar=False, bias=True) + np.eye(3)          # (3, 3), + 1 level^2
    cov_c = np.cov(content, rowvar=False, bias=True)                    # (3, 3)
    A = _symmetric_power(cov_c, 0.5) @ _symmetric_power(cov_s, -0.5)   # (3, 3)
    out = (style - mu_s) @ A.T + mu_c                                   # (P, 3) @ (3, 3)
    return np.clip(out, 0.0, 255.0).astype(np.float32).reshape(np.shape(style_rgb))


def _symmetric_power(C, p):
    """U diag(l^p) U^T for a symmetric PSD C = U diag(l) U^T (eigenvalues < 0, round-off, -> 0)."""
    l, U = np.linalg.eigh(C)
    return (U * np.maximum(l, 0.0) ** p) @ U.T
