"""NumPy and CuPy backends: the device follows the data.

Every op starts with ``xp = get_array_module(x)`` and then calls ``xp.something``, so the same code
runs on NumPy arrays (CPU) and CuPy arrays (GPU). This is the only module that imports CuPy, and it
does so lazily: importing miniautograd never needs CuPy or a GPU. Nothing here chooses the GPU on
its own; the caller asks for it (``to_gpu``, ``--device gpu``).

Also here, because it depends on the device and on nothing else: how large the working buffers
of the convolutions may grow (``default_chunk``; conv.py's docstring says why these sizes).
"""
import numpy as np

CHUNK_ELEMENTS = {"cpu": 1 << 22,    # the most elements of one working buffer (a col chunk, a
                  "gpu": 1 << 25}    # Winograd band): 16 MB and 128 MB in float32

_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why it could not be used, as a sentence for the user


def _import_cupy():
    """Import CuPy once; return the module or None (and remember why not)."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
        _cupy = cupy
    except Exception as exc:  # ImportError, CUDA driver errors, no device
        _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _import_cupy() is not None


def require_gpu():
    """Return the cupy module, or raise RuntimeError with one sentence saying what to install."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError(
            "the GPU was requested but CuPy with a CUDA device is not available "
            f"({_cupy_error}); install it with `pip install \"minivgg[gpu]\"` "
            "(CuPy for CUDA 12) on a machine with an NVIDIA GPU, or use the CPU")
    return cupy


def is_cupy_array(a):
    """True for a cupy.ndarray, without importing CuPy when it is not loaded."""
    return type(a).__module__.startswith("cupy")


def get_array_module(*arrays):
    """The array module (numpy or cupy) of the given arrays; numpy if none is a CuPy array.

    Mixing devices is an error: raises TypeError naming both.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None and hasattr(a, "shape")}
    if len(kinds) > 1:
        raise TypeError("NumPy (CPU) and CuPy (GPU) arrays were mixed in one operation; "
                        "move them to one device with .to_cpu() or .to_gpu() first")
    if kinds == {True}:
        return _import_cupy()
    return np


def to_cpu(a):
    """A NumPy copy of a CuPy array; NumPy arrays are returned unchanged."""
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_gpu(a):
    """A CuPy copy of a NumPy array (CuPy arrays unchanged); raises if no GPU is available."""
    cupy = require_gpu()
    return cupy.asarray(a)


def synchronize(xp):
    """Wait for queued GPU work (a no-op on NumPy); call before reading a timer."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


def default_chunk(xp):
    """CHUNK_ELEMENTS for arrays of module xp: the work-buffer size when the caller gives none."""
    return CHUNK_ELEMENTS["cpu" if xp is np else "gpu"]
