"""The two built-in demo images, drawn with NumPy: a landscape "photo" and a swirling "painting".

``python -m minivgg.stylize --demo`` uses them, so a fresh install shows a real result with no
download. Both are made here from formulas (nothing is copied or downloaded), deterministic, and
drawn at the requested size rather than resized, so edges stay sharp at any size.

Drawing by signed distance. A shape is a function ``d(x, y)``: negative inside, positive outside,
in pixels. ``_coverage(d) = clip(0.5 - d, 0, 1)`` is the fraction of a pixel the shape covers (a
one-pixel ramp across the edge), which anti-aliases every edge for free, and painting a shape is
``img += coverage * (colour - img)``. Circles, boxes, half-planes and their intersections (the
maximum of their distances) are enough for hills, a house, a tree and a sun.

Brush strokes by line integral convolution (Cabral & Leedom 1993): smear a noise image along a flow
field, ``t(p) = mean of noise(p + s * v) over the streamline through p``. Pixels on one streamline
share most of their samples, so the noise becomes long strokes that follow the flow; swirls in the
flow make swirling strokes. The stroke value then picks colours from a palette.
"""
import numpy as np

_SEED = 20160627          # fixed: the demo images are the same on every machine


def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"demo images need an integer size of at least 16 pixels, got {size!r}")


def _grid(h, w, size):
    """Pixel-centre coordinates (H, W) each, in units of ``size`` (so shapes scale with size)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (x + 0.5) / size, (y + 0.5) / size


def _coverage(d, size):
    """Signed distance ``d`` in units of size -> pixel coverage 0..1 with a one-pixel soft edge."""
    return np.clip(0.5 - d * size, 0.0, 1.0)


def _paint(img, coverage, colour):
    """Blend ``colour`` (3,) into ``img`` (H, W, 3) in place, weighted by ``coverage`` (H, W)."""
    img += coverage[:, :, None] * (np.asarray(colour, np.float32) - img)


def _box(x, y, x0, y0, x1, y1):
    """Signed distance (approximate outside the corners) to the box [x0, x1] x [y0, y1]."""
    return np.maximum(np.maximum(x0 - x, x - x1), np.maximum(y0 - y, y - y1))


def _circle(x, y, cx, cy, r):
    return np.hypot(x - cx, y - cy) - r


# ------------------------------------------------------------------------------- the "photo"
def demo_content(size=256):
    """A landscape photo: sky, sun, clouds, two rows of hills, a house with a red roof, a tree.

    Returns rgb float32 (H, W, 3), 0..255, 4:3 landscape: W = size, H = round(0.75 * size).
    """
    h, w = demo_content_shape(size)
    x, y = _grid(h, w, size)                       # x in 0..1, y in 0..0.75, y down
    sky_top, horizon = np.array([62, 118, 200]), np.array([196, 222, 242])
    t = np.clip(y / 0.5, 0, 1)[:, :, None]
    img = (sky_top + t * (horizon - sky_top)).astype(np.float32)
    _paint(img, 0.35 * np.exp(-_circle(x, y, 0.8, 0.16, 0) ** 2 / 0.01), (255, 240, 190))  # glow
    _paint(img, _coverage(_circle(x, y, 0.8, 0.16, 0.06), size), (255, 224, 100))          # sun
    _clouds(img, x, y)
    _hills(img, x, y, size)
    _house(img, x, y, size)
    _tree(img, x, y, size)
    grain = np.random.default_rng(_SEED).normal(0.0, 2.0, img.shape)    # a little sensor noise
    return np.clip(img + grain, 0, 255).astype(np.float32)


def _clouds(img, x, y):
    """Soft white clouds, each a few overlapping Gaussian puffs."""
    for cx, cy, s in [(0.22, 0.12, 1.0), (0.52, 0.08, 0.7)]:
        puffs = sum(np.exp(-((x - cx - dx * s) ** 2 / (0.006 * s) + (y - cy - dy * s) ** 2
                             / (0.0012 * s)))
                    for dx, dy in [(-0.07, 0.01), (0.0, -0.01), (0.07, 0.012), (0.03, 0.02)])
        _paint(img, np.clip(puffs, 0, 0.9), (250, 250, 252))


def _hills(img, x, y, size):
    """Far blue-green hills, then near green hills, shaded darker towards the bottom."""
    far = 0.40 + 0.035 * np.sin(9 * x + 1.0) + 0.02 * np.sin(23 * x)
    _paint(img, _coverage(far - y, size), (96, 138, 120))
    near = 0.50 + 0.04 * np.sin(5 * x + 2.5) + 0.012 * np.sin(17 * x)
    shade = np.clip((y - 0.5) / 0.25, 0, 1)[:, :, None]
    green = np.array([92, 168, 70]) * (1 - 0.35 * shade)          # (H, W, 3)
    cover = _coverage(near - y, size)[:, :, None]
    img += cover * (green.astype(np.float32) - img)
    path = np.abs(x - 0.33 - 0.25 * (y - 0.6)) - 0.01 - 0.12 * np.clip(y - 0.6, 0, 1)
    _paint(img, _coverage(np.maximum(path, 0.6 - y), size), (196, 170, 120))


def _house(img, x, y, size):
    """A cream house with a red roof, a door and two windows; a smaller house behind it."""
    _paint(img, _coverage(_box(x, y, 0.56, 0.40, 0.66, 0.48), size), (214, 200, 176))
    _paint(img, _coverage(_roof(x, y, 0.61, 0.34, 0.40, 0.065), size), (140, 60, 50))
    _paint(img, _coverage(_box(x, y, 0.37, 0.30, 0.39, 0.40), size), (120, 60, 50))   # chimney
    _paint(img, _coverage(_box(x, y, 0.22, 0.44, 0.42, 0.60), size), (238, 226, 196))
    _paint(img, _coverage(_roof(x, y, 0.32, 0.33, 0.44, 0.12), size), (186, 52, 40))
    _paint(img, _coverage(_box(x, y, 0.30, 0.51, 0.345, 0.60), size), (110, 70, 40))   # door
    for x0 in (0.245, 0.365):                                                          # windows
        _paint(img, _coverage(_box(x, y, x0 - 0.005, 0.475, x0 + 0.045, 0.535), size), (250,) * 3)
        _paint(img, _coverage(_box(x, y, x0, 0.48, x0 + 0.04, 0.53), size), (90, 140, 190))


def _roof(x, y, cx, top, base, half):
    """A triangle with apex (cx, top) and base from cx - half to cx + half at height ``base``."""
    slope = half / (base - top)
    norm = np.sqrt(1 + slope ** 2)
    return np.maximum((np.abs(x - cx) - slope * (y - top)) / norm, y - base)


def _tree(img, x, y, size):
    """A brown trunk under a round, two-tone green crown."""
    _paint(img, _coverage(_box(x, y, 0.795, 0.40, 0.815, 0.56), size), (100, 70, 45))
    crown = np.minimum(_circle(x, y, 0.805, 0.35, 0.075), _circle(x, y, 0.77, 0.40, 0.05))
    crown = np.minimum(crown, _circle(x, y, 0.845, 0.40, 0.05))
    _paint(img, _coverage(crown, size), (46, 110, 50))
    _paint(img, 0.6 * _coverage(_circle(x, y, 0.79, 0.33, 0.035), size), (90, 160, 80))


# ---------------------------------------------------------------------------- the "painting"
# Night-sky palette, dark to light: stops on the stroke value 0..1.
_PALETTE_STOPS = np.array([0.0, 0.25, 0.5, 0.7, 0.85, 1.0], np.float32)
_PALETTE = np.array([[14, 26, 70], [30, 62, 150], [62, 118, 196], [128, 178, 214],
                     [236, 214, 96], [252, 244, 190]], np.float32)
_STARS = [(0.15, 0.16, 0.045), (0.42, 0.10, 0.035), (0.70, 0.22, 0.04), (0.86, 0.10, 0.07),
          (0.30, 0.36, 0.03), (0.58, 0.42, 0.035)]      # (x, y, radius); the big one is the moon


def demo_content_shape(size=256):
    """The (H, W) of ``demo_content(size)``, worked out without drawing it."""
    _check_size(size)
    return round(0.75 * size), size


def demo_style(size=256):
    """A Starry-Night-like painting: blue swirling brush strokes, yellow stars with halos, a dark
    cypress and hills. Returns rgb float32 (size, size, 3), 0..255.
    """
    _check_size(size)
    x, y = _grid(size, size, size)
    vx, vy = _flow(x, y)
    strokes = _lic(_stroke_noise(size), vx, vy, size)
    value = _sky_value(x, y) + 0.45 * (strokes - 0.5)               # strokes shift the colour
    img = _palette(value)
    _cypress_and_hills(img, x, y, strokes, size)
    return np.clip(img, 0, 255).astype(np.float32)


def _flow(x, y):
    """Flow field (H, W) x 2: a gentle left-to-right wind, a big swirl, vortices round the stars."""
    vx = 1.0 + 0.3 * np.sin(6 * y + 2 * x)
    vy = 0.35 * np.sin(5 * x + 1.0)
    for cx, cy, r, spin in [(0.45, 0.30, 0.16, 5.0), (0.25, 0.28, 0.10, -4.0)] + \
            [(sx, sy, 2.2 * sr, 6.0) for sx, sy, sr in _STARS]:
        dx, dy = x - cx, y - cy
        weight = spin * np.exp(-(dx * dx + dy * dy) / (r * r))
        vx, vy = vx - weight * dy / r, vy + weight * dx / r         # rotate round (cx, cy)
    vx = np.where(y > 0.7, 1.0, vx)                                # the ground: level strokes
    vy = np.where(y > 0.7, 0.1 * np.sin(12 * x), vy)
    norm = np.hypot(vx, vy) + 1e-6
    return vx / norm, vy / norm


def _stroke_noise(size):
    """Noise of 3-pixel grains at 256 px (size/85), so strokes keep their look at every size."""
    rng = np.random.default_rng(_SEED)
    cells = max(8, size // 3)
    coarse = rng.random((cells, cells), dtype=np.float32)
    index = np.arange(size) * cells // size                          # nearest-cell upsampling
    return coarse[index[:, None], index[None, :]]                    # (cells, cells) -> (H, W)


def _lic(noise, vx, vy, size, *, steps=12):
    """Line integral convolution: average ``noise`` along the streamline through each pixel.

    Walk ``steps`` steps of ``size/128`` pixels forwards and as many backwards along the unit
    flow (vx, vy), sampling by nearest pixel; strokes are about ``size/5`` long at any size.
    """
    h, w = noise.shape
    step = size / 128.0
    rows0, cols0 = np.mgrid[0:h, 0:w].astype(np.float32)
    total, count = noise.copy(), 1
    for sign in (1.0, -1.0):
        rows, cols = rows0.copy(), cols0.copy()
        for _ in range(steps):
            r = np.clip(rows + 0.5, 0, h - 1).astype(np.intp)
            c = np.clip(cols + 0.5, 0, w - 1).astype(np.intp)
            rows += sign * step * vy[r, c]
            cols += sign * step * vx[r, c]
            total += noise[np.clip(rows + 0.5, 0, h - 1).astype(np.intp),
                           np.clip(cols + 0.5, 0, w - 1).astype(np.intp)]
            count += 1
    t = total / count                              # averaging shrinks the contrast: restore it
    return np.clip(0.5 + (t - t.mean()) / (5 * t.std() + 1e-6), 0.0, 1.0)   # mean 0.5, 0..1


def _sky_value(x, y):
    """The painting's colour before strokes, 0..1: blues, brightening into star halos."""
    value = 0.35 + 0.12 * np.sin(7 * x + 3 * y) + 0.1 * np.exp(-((y - 0.3) / 0.08) ** 2)
    for sx, sy, sr in _STARS:
        d = np.hypot(x - sx, y - sy) / sr
        halo = np.exp(-0.3 * d * d) * (0.8 + 0.2 * np.cos(6.0 * d))       # rings round a star
        value = np.maximum(value, 0.35 + 0.65 * halo)
    return value


def _palette(value):
    """Stroke value (H, W), 0..1 -> rgb (H, W, 3) by piecewise-linear interpolation of stops."""
    value = np.clip(value, 0.0, 1.0)
    channels = [np.interp(value, _PALETTE_STOPS, _PALETTE[:, c]) for c in range(3)]
    return np.stack(channels, axis=2).astype(np.float32)           # 3 x (H, W) -> (H, W, 3)


def _cypress_and_hills(img, x, y, strokes, size):
    """Dark blue hills along the bottom and a flame-shaped cypress on the left, both stroked."""
    hills = 0.74 + 0.04 * np.sin(8 * x + 1.0) - 0.03 * np.exp(-((x - 0.65) / 0.1) ** 2)
    hill_colour = np.stack([20 + 40 * strokes, 40 + 50 * strokes, 70 + 70 * strokes], axis=2)
    cover = _coverage(hills - y, size)[:, :, None]
    img += cover * (hill_colour - img)
    half_width = 0.08 * np.clip((y - 0.3) / 0.7, 0, 1) ** 0.6 * (1 + 0.25 * np.sin(45 * y))
    cypress = np.maximum(np.abs(x - 0.12 - 0.02 * np.sin(9 * y)) - half_width, 0.3 - y)
    tree_colour = np.stack([14 + 60 * strokes, 30 + 80 * strokes, 20 + 40 * strokes], axis=2)
    cover = _coverage(cypress, size)[:, :, None]
    img += cover * (tree_colour - img)
