"""Coarse-to-fine: the sizes a run passes through, and what each of them costs (pure arithmetic).

A run optimises a small image first, resizes the result, and goes on at the next size, up to
``--size`` (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017;
see docs/schedule.md). The sizes are the longest sides

    s_k = round(start * factor^k)   for k = 0, 1, ... while start * factor^k < size,   then size

(``--start-size``, ``--scale-factor``), with ``--coarse-iterations`` at each size but the last and
``--iterations`` at the last. ``start == size`` is the single-scale run; a coarse size that rounds
onto the one before it is dropped, and so is every coarse size when the coarse count is 0.

An iteration costs about as much as its pixels (the network is convolutions), so the progress bar
and the estimates weigh each iteration by ``H_k W_k / (H W)``, in units of final-size iterations.
Nothing here touches an image: prepare.py checks the shapes, run.py runs the scales.
"""
import math
from dataclasses import dataclass

from ..image import longest_shape

DEFAULT_START_SIZE = 128          # px; see bench/README.md, "Coarse-to-fine"
DEFAULT_SCALE_FACTOR = math.sqrt(2.0)
DEFAULT_COARSE_ITERATIONS = 100
DEFAULT_ITERATIONS = 150          # at the final size, up to FULL_ITERATIONS_UP_TO px
FULL_ITERATIONS_UP_TO = 512
MAX_SCALE_FACTOR = 4.0


def default_iterations(opts):
    """--iterations when it is not given (Options ``opts``): the iterations at the final size.

    DEFAULT_ITERATIONS up to FULL_ITERATIONS_UP_TO px, and for a single scale at any size; above
    it, after coarser sizes, DEFAULT_ITERATIONS * FULL_ITERATIONS_UP_TO / size (75 at 1024 px).
    Measured (bench/README.md, "Coarse to fine"): at 512 px 150 final-size iterations came within
    1.3% of 500 single-scale ones in 53% of the time; at 1024 px 75 came within 1.6% in 38% of
    the time, where 150 (0.3%) do half the single-scale work.
    """
    single = resolved_start_size(opts) >= opts.size or opts.coarse_iterations == 0
    if single or opts.size <= FULL_ITERATIONS_UP_TO:
        return DEFAULT_ITERATIONS
    return round(DEFAULT_ITERATIONS * FULL_ITERATIONS_UP_TO / opts.size)


def scale_sizes(size, *, start_size, factor):
    """[s_0, s_1, ..., size]: the longest side at each scale, increasing, the last being ``size``.

    >>> scale_sizes(512, start_size=128, factor=2 ** 0.5)
    [128, 181, 256, 362, 512]
    """
    if not 1 <= start_size <= size or not factor > 1:
        raise ValueError(f"scale_sizes: need 1 <= start_size <= size and factor > 1, got "
                         f"start_size={start_size}, size={size}, factor={factor}")
    count = math.ceil(math.log(size / start_size) / math.log(factor) - 1e-9)  # coarse sizes
    sizes = []
    for k in range(count):
        s = round(start_size * factor ** k)
        if s < size and (not sizes or s > sizes[-1]):
            sizes.append(s)
    return sizes + [size]


@dataclass(frozen=True)
class Schedule:
    """The scales of one run: longest side, iterations, and the (H, W) of the content and of each
    style at each scale (the last scale's are the run's working shapes)."""
    sizes: tuple                  # longest sides, increasing
    iterations: tuple             # iterations per scale
    content_shapes: tuple         # (H, W) per scale
    style_shapes: tuple           # per scale, a tuple of (H, W), one per style image

    def weight(self, k):
        """The cost of one iteration at scale k in final-size iterations: H_k W_k / (H W)."""
        (h, w), (H, W) = self.content_shapes[k], self.content_shapes[-1]
        return h * w / (H * W)

    def work_before(self, k):
        """Final-size iterations of the scales before k (as planned)."""
        return sum(n * self.weight(j) for j, n in enumerate(self.iterations[:k]))

    @property
    def total_work(self):
        return self.work_before(len(self.sizes))

    def same_plan(self, sizes, coarse_iterations):
        """True when a run with these sizes and coarse iteration counts had this schedule (the
        final count may differ: --iterations may be raised to go on)."""
        return (list(sizes) == list(self.sizes)
                and list(coarse_iterations) == list(self.iterations[:-1]))


def make_schedule(opts, content_shape, style_shapes):
    """The Schedule of validated ``opts`` for working shapes ``content_shape`` and ``style_shapes``
    (those at ``--size``). Each style's longest side at a scale of size s is round(style_scale * s)."""
    start = opts.size if opts.coarse_iterations == 0 else resolved_start_size(opts)
    sizes = scale_sizes(opts.size, start_size=start, factor=opts.scale_factor)
    content, styles = [], []
    for s in sizes[:-1]:
        content.append(longest_shape(content_shape, s))
        style_size = max(1, round(opts.style_scale * s))
        styles.append(tuple(longest_shape(shape, style_size) for shape in style_shapes))
    content.append(tuple(content_shape))
    styles.append(tuple(tuple(shape) for shape in style_shapes))
    iterations = [opts.coarse_iterations] * (len(sizes) - 1) + [opts.iterations]
    return Schedule(tuple(sizes), tuple(iterations), tuple(content), tuple(styles))


def resolved_start_size(opts):
    """--start-size, or when left out the default, but never more than --size."""
    return min(DEFAULT_START_SIZE, opts.size) if opts.start_size is None else opts.start_size


def saved_schedule(state):
    """A checkpoint's schedule {sizes, iterations, shape}; version 2 files (single scale) had
    none: theirs is the one size of their image."""
    if "schedule" in state:
        return state["schedule"]
    shape = list(state["x"].shape[2:])
    return {"sizes": [max(shape)], "iterations": [None], "shape": shape}


def describe(plan):
    """'128, 181, 256 px, 100 + 100 + 200 iterations' of a Schedule or a saved schedule dict
    ('512 px' for a version 2 checkpoint, whose count was not saved)."""
    sizes, counts = (plan["sizes"], plan["iterations"]) if isinstance(plan, dict) else (
        plan.sizes, plan.iterations)
    text = ", ".join(str(s) for s in sizes) + " px"
    return text if None in counts else text + f", {' + '.join(map(str, counts))} iterations"
