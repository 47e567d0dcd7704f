"""Where the VGG-19 weights file lives: its name, the published facts, the search order.

``MANIFEST`` below is the one source of truth for the published files (weights/manifest.json is
a copy of it for people browsing the repository; a test checks that the two agree). The file is
searched, in order: an explicit path, ``$MINIVGG_WEIGHTS``, ``weights/`` under the current
directory, the user cache dir (``$XDG_CACHE_HOME/minivgg`` or ``~/.cache/minivgg``), where
``python -m minivgg.weights download`` puts it by default. ``DOWNLOAD_CMD`` and
``DOWNLOAD_HINT`` are the words every error message uses to say how to get the file.

This module only names places; reading the file is matfile.py's work, caching it
weights_cache.py's, downloading it weights.py's.
"""
import os
from pathlib import Path

from .errors import UserError

FILENAME = "imagenet-vgg-verydeep-19.mat"
MANIFEST = {
    "current": {
        "filename": FILENAME,
        "url": "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat",
        "mirrors": ["http://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"],
        "size": 534904783,
        "md5": "106118b7cf60435e6d8e04f6a6dc3657",
        "sha256": "abdb57167f82a2a1fbab1e1c16ad9373411883f262a1a37ee5db2e6fb0044695",
        "format": "MATLAB v7 (zlib-compressed v5), current MatConvNet layout",
    },
    "old": {
        "filename": FILENAME,
        "url": "http://www.vlfeat.org/matconvnet/models/beta16/imagenet-vgg-verydeep-19.mat",
        "size_approx": 576000000,
        "md5": "8ee3263992981a1d26e73b3ca028a123",
        "format": "MATLAB v5 (uncompressed), MatConvNet beta16 layout; also readable by minivgg",
    },
}
DOWNLOAD_CMD = "`python -m minivgg.weights download`"
DOWNLOAD_HINT = f"get it with {DOWNLOAD_CMD}"


def user_cache_dir(environ=None):
    """``$XDG_CACHE_HOME/minivgg``, or ``~/.cache/minivgg``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minivgg"


def search_locations(explicit=None, *, environ=None, cwd=None):
    """[(label, path)] in the order minivgg searches them."""
    env = os.environ if environ is None else environ
    places = [("given path", Path(explicit))] if explicit else []
    if env.get("MINIVGG_WEIGHTS"):
        places.append(("$MINIVGG_WEIGHTS", Path(env["MINIVGG_WEIGHTS"])))
    places.append(("./weights", Path(cwd or os.getcwd()) / "weights" / FILENAME))
    places.append(("user cache", user_cache_dir(env) / FILENAME))
    return places


def find_weights(explicit=None, *, environ=None, cwd=None):
    """The first weights file found, or None; a given path or $MINIVGG_WEIGHTS must exist."""
    for label, path in search_locations(explicit, environ=environ, cwd=cwd):
        if path.is_file():
            return path
        if label != "./weights" and label != "user cache":
            raise UserError(f"the weights file {path} ({label}) does not exist; pass the path of "
                            f"{FILENAME}, or {DOWNLOAD_HINT} "
                            f"(it goes to {user_cache_dir(environ)}, where minivgg looks)")
    return None
