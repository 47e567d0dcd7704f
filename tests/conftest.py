"""Shared test helpers: the project root, and the CuPy leg that skips without a GPU."""
from pathlib import Path

import numpy as np
import pytest

import miniautograd as ag

ROOT = Path(__file__).resolve().parent.parent


def xp_params():
    """pytest params for the two backends; the CuPy one skips where CuPy or a GPU is missing."""
    return [pytest.param("numpy", id="numpy"),
            pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=xp_params())
def xp(request):
    """The array module under test: numpy, or cupy where a GPU is present (skipped otherwise)."""
    if request.param == "numpy":
        return np
    if not ag.gpu_available():
        pytest.skip("CuPy with a CUDA device is not available")
    return ag.require_gpu()
