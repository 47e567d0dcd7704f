"""Checkpoints of a run: the image so far and the optimiser's state, written so --resume can go on.

Every ``--checkpoint-every N`` iterations the run writes ``OUT_0100.png`` (what the result looks
like at iteration 100) and beside it ``OUT_0100.state.npz``: the image being optimised (in the
network's preprocessed space, float32, not rounded to 8 bits), the optimiser's ``state_dict()``
(Adam's moments or L-BFGS's history, and the loss terms of its point), the iteration, and a few
facts about the run that a resumed run must share (image shape, optimiser). ``--resume`` loads the
highest-numbered one. Version 1 files, whose optimiser state lacks the terms, still load: run.py
takes them from the file's last log row.

The state file is a NumPy ``.npz`` holding only arrays: the nested structure of the state (dicts,
lists, numbers) is stored as JSON text in one uint8 array, and every array as its own entry, so
loading needs no pickle (``allow_pickle=False``: a checkpoint cannot run code). Every file is
written to a temporary name in the same folder and renamed into place (``atomic_write``).
"""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from miniautograd import to_cpu

from ..errors import UserError
from ..files import atomic_write

STATE_SUFFIX = ".state.npz"


def checkpoint_paths(output, iteration, *, digits=4):
    """(image, state) paths of the checkpoint at ``iteration``: OUT_0100.png, OUT_0100.state.npz."""
    output = Path(output)
    stem = f"{output.stem}_{iteration:0{digits}d}"
    return output.with_name(stem + ".png"), output.with_name(stem + STATE_SUFFIX)


def scale_image_path(output, size):
    """--save-scales: OUT_<size>px.png (the px keeps it apart from checkpoint images)."""
    return output.with_name(f"{output.stem}_{size}px.png")


def find_last(output):
    """The state path of the highest-numbered checkpoint of ``output``, or None."""
    output = Path(output)
    pattern = re.compile(re.escape(output.stem) + r"_(\d+)" + re.escape(STATE_SUFFIX) + "$")
    found = [(int(m.group(1)), p) for p in output.parent.glob(f"{output.stem}_*{STATE_SUFFIX}")
             if (m := pattern.match(p.name))]
    return max(found)[1] if found else None


# -- nested state <-> arrays ----------------------------------------------------------------------
def _flatten(value, arrays):
    """JSON-able copy of ``value`` with every array moved into ``arrays`` (a list) by index."""
    if isinstance(value, dict):
        return {"dict": {str(k): _flatten(v, arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_flatten(v, arrays) for v in value]}
    if hasattr(value, "shape") and hasattr(value, "dtype"):      # NumPy, CuPy, NumPy scalars
        arrays.append(to_cpu(value))
        return {"array": len(arrays) - 1}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} in a state file")


def _unflatten(node, arrays):
    (kind, v), = node.items()
    if kind == "dict":
        return {k: _unflatten(x, arrays) for k, x in v.items()}
    if kind == "list":
        return [_unflatten(x, arrays) for x in v]
    return arrays[v] if kind == "array" else v


def dump_state(state):
    """A nested dict of numbers, strings, lists and arrays -> the bytes of a .npz file."""
    arrays = []
    meta = json.dumps(_flatten(state, arrays)).encode()
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(meta, dtype=np.uint8), **entries)
    return buffer.getvalue()


def load_state(path):
    """The nested state saved by ``dump_state`` in the file ``path``; UserError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[f"a{i}"] for i in range(len(f.files) - 1)]
            return _unflatten(json.loads(f["__meta__"].tobytes().decode()), arrays)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"the checkpoint '{path}' cannot be read ({type(exc).__name__}); delete "
                        "it to resume from an earlier one, or run without --resume") from None


def save_checkpoint(output, iteration, state, write_image, *, digits=4):
    """Write the checkpoint image (by calling ``write_image(path)``) and then its state file.

    The state goes last, so a state file always has its image. Returns the image path.
    """
    image_path, state_path = checkpoint_paths(output, iteration, digits=digits)
    write_image(image_path)
    atomic_write(state_path, dump_state(state))
    return image_path
