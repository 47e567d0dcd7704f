"""What each scale of a run works on: the job at that scale, its objective and its optimiser.

run.py calls these once per scale of the schedule: ``at_scale`` resizes the content, alpha and
styles (and says whether that scale needs tiles), ``build_objective`` computes the targets and
builds losses.Objective (guided by --style-masks, tiled under --tile/--max-memory) and wraps it
in ``OfSavedPicture`` (the loss of the picture that is saved, pixels clipped to 0..255),
``make_optimizer`` starts L-BFGS or Adam afresh, and ``next_start`` carries the previous
scale's result over. ``with_matched_colors`` applies --match-colors once, before the first scale.
"""
import dataclasses
import functools

import numpy as np

import miniautograd as ag

from .. import guided, image, losses, masks, optim, tiled
from .options import DEFAULT_ADAM_LR


class OfSavedPicture:
    """An objective f evaluated on the picture the run saves: f(clip(x)), x clipped per channel
    to [lo, hi] = [0 - mean, 255 - mean], the network input of the 0..255 range.

    The optimisers move x freely; without this they lower f(x) while the saved picture is
    clip(x), whose loss can rise as pixels drift out of range (bench/README.md, "Coarse to fine":
    at 128 px its loss was 1259 where the optimiser's was 895). With it the loss they lower is the
    saved picture's. Chain rule through the clip, element by element:
        d f(clip(x)) / dx = f'(clip(x)) where lo <= x <= hi, and 0 outside,
    so a pixel past the range stays at its bound in the picture and costs nothing. Everything
    else (``terms``, ``net``, ``layers``...) is the wrapped objective's, for in-range images.
    """

    def __init__(self, objective, mean, *, to_device=lambda a: a):
        self.objective = objective
        mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)      # (3,) -> (1, 3, 1, 1)
        self.lo, self.hi = to_device(-mean), to_device(255.0 - mean)      # once, on x's device

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def value_and_grad(self, x):
        """(total, gradient, terms) as the wrapped objective's, of clip(x); x (1, 3, H, W)."""
        xp, lo, hi = ag.get_array_module(x), self.lo, self.hi
        total, grad, terms = self.objective.value_and_grad(xp.clip(x, lo, hi))
        grad *= (x >= lo) & (x <= hi)                  # clip's derivative: 0 past the bounds
        return total, grad, terms


def build_objective(job, opts, to_device):
    """losses.Objective with targets computed once from the content and the style images;
    with ``job.tile`` all of it tile by tile (tiled.TiledObjective; the targets, forwards
    without a graph, in the moments' pass's tiles)."""
    mean, tile, first = job.net.mean, job.tile, job.moment_tile
    x = to_device(image.preprocess(job.content, mean))
    content = (tiled.tiled_responses(job.net, x, opts.content_layers, tile=first) if tile else
               losses.content_targets(job.net, x, opts.content_layers))
    styles = [to_device(image.preprocess(rgb, mean)) for rgb in job.styles]
    moments = functools.partial(tiled.tiled_moments, tile=first) if tile else losses.image_moments
    if job.masks:
        style = guided_style(job, opts, styles, to_device, moments)
    else:
        style = losses.style_targets(job.net, styles, opts.style_layers, moments=moments,
                                     blend=opts.style_blend_weights, loss=opts.style_loss)
    w = losses.layer_weights(opts.style_layers, opts.style_layer_weights)
    objective = losses.Objective(job.net, content, style, w, content_weight=opts.content_weight,
                                 style_weight=opts.style_weight, tv_weight=opts.tv_weight,
                                 style_loss=opts.style_loss,
                                 layer_loss=guided.guided_layer_loss if job.masks else None)
    objective = tiled.TiledObjective(objective, tile=tile, moment_tile=first) if tile else \
        objective
    return OfSavedPicture(objective, mean, to_device=to_device)


def guided_style(job, opts, styles, to_device, moments):
    """--style-masks: {layer: guided.GuidedTarget}, the masks at the content's whole size (a
    tiled objective crops them tile by tile); ``moments`` computes each style image's own."""
    layer_masks = masks.masks_at(job.net, job.masks, job.content.shape[:2], opts.style_layers,
                                 to_device=to_device)
    return guided.guided_style_targets(job.net, styles, layer_masks, opts.style_layers,
                                       loss=opts.style_loss, moments=moments)


def with_matched_colors(job, opts):
    """--match-colors: the job with every style recoloured to the content's RGB mean and
    covariance (image.match_colors), and the init too when it is the first style."""
    if not opts.match_colors:
        return job
    styles = [image.match_colors(rgb, job.content) for rgb in job.styles]
    init = image.resize_to(styles[0], job.content.shape[:2]) if opts.init == "style" else job.init
    return dataclasses.replace(job, styles=styles, init=init)


def make_optimizer(opts, x0, fn, *, half_history=False):
    """L-BFGS (the paper's choice, the default), its pairs as float16 with ``half_history``, or
    Adam with ``--learning-rate``."""
    if opts.optimizer == "adam":
        lr = DEFAULT_ADAM_LR if opts.learning_rate is None else opts.learning_rate
        return optim.Adam(x0, fn, lr=lr)
    return optim.LBFGS(x0, fn, history=opts.lbfgs_history, half_history=half_history)


def at_scale(job, schedule, k):
    """The job's content, alpha and styles resized to scale k of ``schedule`` (Lanczos,
    image.resize_to); at the last scale they are the job's own, so its objective is the
    single-scale one at --size. A scale no longer than the tile runs untiled: its whole image
    is smaller than one tile's window, whose iteration the memory check has approved."""
    shape = schedule.content_shapes[k]
    styles = [image.resize_to(rgb, s) for rgb, s in zip(job.styles, schedule.style_shapes[k])]
    alpha = None if job.alpha is None else image.resize_to(job.alpha, shape)
    tile = job.tile if job.tile and max(shape) > job.tile else None
    moment_tile = job.moment_tile if tile else None
    return dataclasses.replace(job, content=image.resize_to(job.content, shape), alpha=alpha,
                               styles=styles, tile=tile, moment_tile=moment_tile)


def next_start(x, init, mean, old_shape, shape):
    """The next scale's start, a (1, 3, H', W') NumPy input, from the result x (1, 3, H, W):
    the picture enlarged (clipped to 0..255, Lanczos), plus the init image's detail that the
    smaller size could not hold:

        start = up(clip(x)) + (init_new - up(init_old))

    init_old, init_new: the init image (rgb, any size) resized to (H, W) and (H', W'); up():
    (H, W) -> (H', W'). The bracket is the init's band between the two resolutions (a level of
    its Laplacian pyramid), so where the result still equals the init, the start is the init at
    the new size, where a single-scale run starts. Without it the content's edges finer than
    the smallest size's pixels never come back (bench/README.md: at 1024 px, the loss at
    724 px of the result 3952 -> 3548; docs/schedule.md). ``init=None`` (the noise init, a
    random start with no detail to restore): the enlarged picture alone."""
    def up(rgb):
        return image.resize_to(rgb, shape)
    rgb = up(image.deprocess(x, mean))
    if init is not None:
        rgb += image.resize_to(init, shape) - up(image.resize_to(init, old_shape))
    return image.preprocess(rgb, mean)
