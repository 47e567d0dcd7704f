"""The masks of ``--style-masks``: read, checked, resized to an image and pooled to each layer.

Read this before guided.py, which weights the features by these masks. A mask is a grayscale
image, one per style image: where it is white (1) its style applies, where black (0) it does not,
grey in between; values in [0, 1], float32, (H, W). The checks here are the users' mistakes, one
sentence each: an unreadable file (image.read_image's sentences), a mask whose proportions differ
from the content's by more than 1%, an all-black mask.

A mask is kept at the size it was read and brought to an image's size only when needed
(``masks_at``), so a run at several sizes (a coarse-to-fine schedule) asks for each size anew:
resized to the image (Lanczos, clipped to [0, 1]), then, layer by layer, through the network's
own pools (net.layers' kernel, stride and padding, and net.pooling: average or max), so that a
mask position sits where the feature position it weights does. Convolutions keep the size.
"""
import numpy as np

import miniautograd as ag

from . import image
from .errors import UserError

ASPECT_TOLERANCE = 0.01      # a mask's width/height may differ from the content's by 1%
UNCOVERED_NOTICE = 0.01      # say so when more than 1% of the image has no style
BLACK = 0.5 / 255            # below half an 8-bit level: black


def read_mask(source, what):
    """A mask (H, W) float32 in [0, 1] from a path, a PIL image or an (H, W) or (H, W, 3) array
    of 0..255 values (like the images); colour is turned to grey by ITU-R 601 luma."""
    rgb, _ = image.read_source(source, what)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)   # (H, W, 3) @ (3,) -> (H, W)
    return np.clip(grey / 255.0, 0.0, 1.0)


def describe(source, index):
    """How a sentence names mask ``index`` (0-based): its path, or 'style mask 2'."""
    return f"'{source}'" if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") \
        else f"style mask {index + 1}"


def check_mask(mask, name, content_shape):
    """UserError when the mask's proportions differ from the content's (H, W) by more than
    ASPECT_TOLERANCE, or when it is black everywhere."""
    (h, w), (ch, cw) = mask.shape, content_shape
    if abs((w / h) / (cw / ch) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"the mask {name} is {w}x{h} but the content image is {cw}x{ch}, whose "
                        f"proportions differ by more than 1%; resize or crop the mask to the "
                        "content's proportions")
    if mask.max() < BLACK:
        raise UserError(f"the mask {name} is black everywhere, so its style would do nothing; "
                        "paint white where that style should go, or leave that style out")


def read_masks(sources, content_shape):
    """[(H, W) masks] of ``sources`` (one per style), each read and checked against the
    content's shape (H, W) as it was given."""
    masks = []
    for i, source in enumerate(sources):
        name = describe(source, i)
        mask = read_mask(source, f"mask {name}")
        check_mask(mask, name, content_shape)
        masks.append(mask)
    return masks


def resize_mask(mask, shape):
    """A mask resized to ``shape`` (H, W) by Lanczos, clipped back to [0, 1]."""
    return image.resize_to(mask * 255.0, shape) / 255.0


def uncovered_fraction(masks, shape):
    """The fraction of an image of ``shape`` (H, W) that no mask covers (all below BLACK)."""
    total = sum(resize_mask(mask, shape) for mask in masks)
    return float(np.mean(total < BLACK))


def pool_mask(net, spec, m):
    """One pool of ``net.layers`` (its kernel, stride, padding; net.pooling) applied to a mask
    array m (1, 1, H, W), as VGG19.apply pools the features."""
    pool = ag.avg_pool2d if net.pooling == "avg" else ag.max_pool2d
    return pool(ag.Tensor(m), spec.kernel, stride=spec.stride, pad=spec.pad).data


def layer_masks(net, mask, layers):
    """{layer: the mask at that layer's resolution (1, 1, h, w)} for a mask array (H, W) already
    at the image's size (on the run's device): the network's pools applied in order."""
    m, found, wanted = mask[None, None], {}, set(layers)     # (H, W) -> (1, 1, H, W)
    for spec in net.layers:
        if spec.kind == "pool":
            m = pool_mask(net, spec, m)
        if spec.name in wanted:
            found[spec.name] = m
        if len(found) == len(wanted):
            break
    return found


def masks_at(net, masks, shape, layers, *, to_device=np.asarray):
    """[{layer: (1, 1, h, w) float32 mask}], one dict per style: the masks (as read) resized to
    an image of ``shape`` (H, W) and pooled to each of ``layers``. What a run at another image
    size (a coarse-to-fine schedule) calls again for each size."""
    return [layer_masks(net, to_device(resize_mask(mask, shape).astype(np.float32)), layers)
            for mask in masks]


def notices(masks, shape, *, blend_weights):
    """The sentences a run with masks says once: the part of the image of ``shape`` (H, W) that
    no mask covers, if over UNCOVERED_NOTICE, and that --style-blend-weights is ignored."""
    lines, uncovered = [], uncovered_fraction(masks, shape)
    if uncovered > UNCOVERED_NOTICE:
        lines.append(f"{100 * uncovered:.1f}% of the image is black in every style mask: there "
                     "it gets no style loss, only the content and smoothness terms")
    if blend_weights is not None:
        lines.append("--style-blend-weights is ignored with --style-masks: each style is "
                     "matched on its own region")
    return lines
