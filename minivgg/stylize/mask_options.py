"""The option of spatial control: --style-masks (one grayscale mask per style image).

options.py holds its field and default (``Options.style_masks``) and calls the two functions
here: the check that needs no file (one sentence, before any work) and the argument of the
command line. What the masks do is in minivgg/masks.py (reading, resizing, pooling) and
minivgg/guided.py (the guided Gram matrices); prepare.py reads and checks the files.
"""
from pathlib import Path

from ..errors import UserError
from .checks import name_list


def check_mask_options(opts):
    """--style-masks: one mask per style image (a single path or image may stand alone)."""
    masks = opts.style_masks
    if masks is None:
        return
    if isinstance(masks, (str, Path)) or not isinstance(masks, (list, tuple)):
        masks = [masks]
    opts.style_masks = list(masks)
    styles = 1 if opts.demo else len(opts.style)
    if len(opts.style_masks) != styles:
        raise UserError(f"--style-masks gives {len(opts.style_masks)} mask(s) for {styles} style "
                        "image(s); give one mask per style image, in the same order")


def add_mask_options(p, d):
    """--style-masks, in its own group of --help."""
    p = p.add_argument_group("spatial control")
    p.add_argument("--style-masks", type=name_list, default=d.style_masks, metavar="M1,M2",
                   help="one grayscale image per style image, the content's proportions: its "
                   "style goes where the mask is white (guided Gram matrices; off)")
