"""A run's device, from its name: the one place where "cpu" and "gpu" are translated.

A run names its device ("auto", "cpu" or "gpu": ``--device``); everything else asks a
:class:`Device` for what it needs of it: the array module (NumPy or CuPy), the function that puts
an array there, the size of the convolutions' work buffers (autograd/backend.py's CHUNK_ELEMENTS,
the engine's one rule, keyed by these names), and the free memory a run may use
(machine.py's RAM or GPU query). Only ``array_module``, ``put`` and ``free_bytes`` of the "gpu"
device import CuPy (through miniautograd.backend): the cost model can plan a GPU run without one.
"""
from dataclasses import dataclass

import numpy as np

from miniautograd import backend

from . import machine
from .errors import UserError

NAMES = ("cpu", "gpu")              # the devices a run can use
CHOICES = ("auto", *NAMES)          # what --device accepts: auto picks the GPU when CuPy sees one


@dataclass(frozen=True)
class Device:
    """The device ``name`` ("cpu" or "gpu") and what the code needs of it."""
    name: str

    def __post_init__(self):
        if self.name not in NAMES:
            raise ValueError(f"device must be one of {', '.join(NAMES)}, not {self.name!r}")

    @property
    def chunk(self):
        """Elements of one work buffer of a convolution (a col chunk, a Winograd band)."""
        return backend.CHUNK_ELEMENTS[self.name]

    @property
    def memory(self):
        """What its free memory is called in a sentence: "RAM" or "GPU memory"."""
        return "GPU memory" if self.name == "gpu" else "RAM"

    def array_module(self):
        """numpy, or cupy (RuntimeError with one sentence when there is no GPU)."""
        return backend.require_gpu() if self.name == "gpu" else np

    def put(self, array):
        """``array`` on this device: a CuPy copy for the GPU, unchanged for the CPU."""
        return backend.to_gpu(array) if self.name == "gpu" else array

    def put_network(self, net):
        """``net`` (a VGG19) with its weights on this device; returns it."""
        return net.to_gpu() if self.name == "gpu" else net

    def free_bytes(self):
        """Bytes free for a run there (None when the system does not say)."""
        if self.name == "gpu":
            return machine.gpu_free_bytes(backend.require_gpu())
        return machine.ram_free_bytes()


def choose(requested):
    """(Device, a notice or None) for --device ``requested``. "auto": the GPU when CuPy sees one,
    and a line saying which was chosen; "gpu" without one: UserError saying what to install."""
    if requested == "gpu":
        try:
            backend.require_gpu()
        except RuntimeError as exc:
            raise UserError(f"--device gpu: {exc}") from None
    name = ("gpu" if backend.gpu_available() else "cpu") if requested == "auto" else requested
    if requested != "auto":
        return Device(name), None
    return Device(name), ("device: GPU (CuPy)" if name == "gpu" else
                          "device: CPU (NumPy); no GPU with CuPy found, --device gpu needs one")
