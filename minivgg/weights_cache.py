"""The .npz cache of the parsed VGG-19 weights, and ``load_weights``, which uses it.

Parsing the 535 MB .mat takes seconds; the cache (about 80 MB: the conv weights already in the
engine's layout (O, C, KH, KW), the biases, the mean pixel and the 37 LayerSpecs as JSON) loads in
a fraction of one. It is written beside the .mat as ``NAME.npz``, else in the user cache dir as
``NAME-<sha1 of the .mat's path>.npz``, always through ``files.atomic_write``. Its ``key`` holds
the .mat's size and modification time (ns) and ``CACHE_FORMAT``: when any differs, the cache is
stale and the .mat is parsed again. An unreadable cache is ignored and rewritten.
"""
import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError
from .files import atomic_write
from .matfile import LayerSpec, VGGWeights, parse_vgg19, read_mat
from .weights_location import DOWNLOAD_HINT, user_cache_dir

CACHE_FORMAT = 1


def load_weights(path):
    """VGGWeights of the .mat at path: from its cache when still valid, else parsed and cached."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the weights file {path} does not exist; {DOWNLOAD_HINT}")
    key = cache_key(path)
    for cache in cache_paths(path):
        weights = read_cache(cache, key)
        if weights is not None:
            return weights
    data = read_mat(path)
    try:
        weights = parse_vgg19(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    del data                                        # fc6-fc8 and the rest go here
    write_cache(weights, path, key)
    return weights


def cache_key(path):
    """What identifies one version of the .mat: its size and modification time (ns)."""
    stat = path.stat()
    return json.dumps({"format": CACHE_FORMAT, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def cache_paths(path):
    """Where the .npz cache of path may be: beside it, then in the user cache dir."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return [path.with_name(path.name + ".npz"),
            user_cache_dir() / f"{path.name}-{digest}.npz"]


def read_cache(cache, key):
    """VGGWeights from a cache file whose key matches; None if absent, stale or unreadable."""
    try:
        with np.load(cache, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            layers = tuple(LayerSpec(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in spec.items()})
                           for spec in json.loads(str(npz["layers"])))
            params = {s.name: (npz[f"W_{s.name}"], npz[f"b_{s.name}"])
                      for s in layers if s.kind == "conv"}
            return VGGWeights(str(npz["layout"]), layers, params, npz["mean"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None


def write_cache(weights, path, key):
    """Write the cache atomically beside path, else in the user cache dir; skip if both fail."""
    arrays = {"key": np.array(key), "layout": np.array(weights.layout), "mean": weights.mean,
              "layers": np.array(json.dumps([dataclasses.asdict(s) for s in weights.layers]))}
    for name, (W, b) in weights.params.items():
        arrays[f"W_{name}"], arrays[f"b_{name}"] = W, b
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    npz = buffer.getvalue()
    for cache in cache_paths(path):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            return atomic_write(cache, npz)
        except OSError:
            continue
    return None
