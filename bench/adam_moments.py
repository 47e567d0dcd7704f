"""Adam's moment estimates across the scales of a schedule: reset, resized, or resized and rescaled.

The experiment behind bench_schedule.py's ``--adam-moments`` (issue 11). The program starts a
fresh Adam at each scale (``reset``: zero moments, bias correction from t = 1; docs/schedule.md
argues for it). The other two modes carry the moments over, patched into the run from outside as
bench_schedule's other instruments are; minivgg is not changed:

- ``resize``: on entering scale k > 0, the new Adam starts with the previous scale's m and v
  resized to the new image (per channel, bilinear) and its bias correction continues from the
  steps already taken: t = steps_before + iteration + 1, so carried moments are not amplified by
  1 / (1 - beta^t) as if they had started at zero.
- ``rescale``: as ``resize``, then m *= r and v *= r^2 with r = old pixels / new pixels: every
  loss is a mean over positions, so the gradient per pixel scales about as 1 / pixels.
"""
import contextlib

import numpy as np
from PIL import Image

import miniautograd as ag
from minivgg import optim
from minivgg.stylize import run as run_module

MODES = ("reset", "resize", "rescale")


class CarriedAdam(optim.Adam):
    """Adam that goes on from ``steps_before`` earlier steps, with moments ``m`` and ``v`` given
    (arrays of x0's shape). Its bias correction uses t = steps_before + iteration + 1:

        m_hat = m / (1 - b1^t);   v_hat = v / (1 - b2^t)

    while ``iteration`` still counts this object's own steps from 0 (Run.run_scale counts a
    scale's iterations with it). Given an Adam's x, m, v and iteration as ``steps_before``, it
    takes the very steps that Adam would have taken next (tested)."""

    def __init__(self, x0, fn, *, m, v, steps_before, **settings):
        super().__init__(x0, fn, **settings)
        self.m, self.v = self._to_device(m), self._to_device(v)
        self.steps_before = int(steps_before)

    def step(self):
        """Adam.step with its step count shifted by steps_before for the length of the step:
        Adam.step reads t = iteration + 1 and sets iteration = t on success."""
        self.iteration += self.steps_before
        try:
            return super().step()
        finally:
            self.iteration -= self.steps_before


def resized_moment(a, shape):
    """A moment (1, C, H, W) -> a (1, C, H', W') float32 NumPy array, each channel resized
    bilinearly by Pillow as a mode "F" image (float32: nothing rounded or clipped, unlike
    image.resize_to, which clips to 0..255 for pictures). Bilinear weights are >= 0 and sum to 1,
    so a v >= 0 stays >= 0 (Lanczos and bicubic have negative lobes and could make it < 0)."""
    out_h, out_w = (int(n) for n in shape)
    channels = [Image.fromarray(np.ascontiguousarray(c, dtype=np.float32))
                .resize((out_w, out_h), Image.Resampling.BILINEAR)  # Pillow wants (W, H)
                for c in ag.to_cpu(a)[0]]                           # (1, C, H, W) -> C x (H, W)
    return np.stack([np.asarray(c, dtype=np.float32) for c in channels])[None]  # (1, C, H', W')


def carried(before, fresh, *, rescale):
    """The Adam for a new scale: ``fresh`` (as the program made it: its x, fn and settings) with
    the moments of ``before`` (the previous scale's Adam) resized to its image, times r and r^2
    with ``rescale`` (r = before's pixels / fresh's pixels), and the step count going on."""
    (h0, w0), (h, w) = before.x.shape[2:], fresh.x.shape[2:]
    r = (h0 * w0) / (h * w) if rescale else 1.0
    return CarriedAdam(fresh.x, fresh.fn, m=resized_moment(before.m, (h, w)) * r,
                       v=resized_moment(before.v, (h, w)) * (r * r),
                       steps_before=getattr(before, "steps_before", 0) + before.iteration,
                       lr=fresh.lr, betas=(fresh.beta1, fresh.beta2), eps=fresh.eps)


@contextlib.contextmanager
def carrying_moments(mode):
    """Inside the block, each Adam that run.py's ``make_optimizer`` makes after the first takes
    over the moments of the one made before it (one run's scales, in order), as ``mode`` says;
    ``reset`` patches nothing. The original make_optimizer is back on leaving the block."""
    if mode not in MODES:
        raise ValueError(f"carrying_moments: mode must be one of {MODES}, not {mode!r}")
    if mode == "reset":
        yield
        return
    real, previous = run_module.make_optimizer, []

    def make_optimizer(opts, x0, fn, **options):
        opt = real(opts, x0, fn, **options)
        if previous and isinstance(opt, optim.Adam):
            opt = carried(previous[-1], opt, rescale=(mode == "rescale"))
        previous[:] = [opt]
        return opt

    run_module.make_optimizer = make_optimizer
    try:
        yield
    finally:
        run_module.make_optimizer = real
