"""Does a run fit in memory: the check before a run, and the largest size that fits.

:func:`check_memory` compares plan.py's peak for one iteration with the free RAM or GPU memory
(device.py asks machine.py) and, when it does not fit, says the largest ``--size`` that does
(:func:`largest_size_that_fits`, a bisection on plan.py's model). stylize/prepare.py runs it on
the working shapes, before any image is resized.
"""
from . import plan
from .device import Device
from .errors import UserError
from .explain import format_bytes
from .image import longest_shape

GIB = 1024 ** 3


def largest_size_that_fits(net, available_bytes, *, shape=(1, 1), **options):
    """The longest side (pixels) whose plan's peak memory fits in ``available_bytes``; 0 if none.

    shape: the image's (H, W), for its aspect ratio; options: those of plan.plan_iteration.
    Bisection: the peak grows with the size.
    """
    def fits(longest):
        try:
            peak = plan.plan_iteration(net, longest_shape(shape, longest), **options).peak_bytes
        except UserError:           # too small to reach the deepest layer
            return False
        return peak <= available_bytes

    low, high = 0, 1 << 16                          # fits(low) holds (or low == 0); fits(high) not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def check_memory(net, size, *, device="cpu", available=None, **options):
    """Raise UserError if one iteration at ``size`` is estimated not to fit; return the plan.

    available: free bytes (Device(device).free_bytes() when None; no check at all when the
    system does not say). options: those of plan.plan_iteration.
    """
    planned = plan.plan_iteration(net, size, device=device, **options)
    if available is None:
        available = Device(device).free_bytes()
    if available is None or planned.peak_bytes <= available:
        return planned
    longest = largest_size_that_fits(net, available, shape=size, device=device, **options)
    advice = f"use --size {longest} or less" if longest else "free some memory"
    raise UserError(f"one iteration at {size[1]}x{size[0]} needs about "
                    f"{format_bytes(planned.peak_bytes)} but only {format_bytes(available)} of "
                    f"{Device(device).memory} is free; {advice}")
