"""minivgg: VGG-19 and Gatys, Ecker & Bethge's neural style transfer on miniautograd."""

from .stylize import stylize  # noqa: E402,F401
from .vgg import VGG19, load_vgg19  # noqa: E402,F401
