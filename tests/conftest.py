"""Shared test helpers: the project root, the CuPy leg that skips without a GPU, and the small
files the stylize tests run on (a tiny VGG-19-shaped .mat, a content and a style image)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import miniautograd as ag
from matfiles import write_tiny_vgg19_mat

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


@pytest.fixture(scope="session")
def tiny_mat(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat"
    write_tiny_vgg19_mat(path)
    return path


@pytest.fixture
def images(tmp_path, monkeypatch):
    """content.png (48x36, a smooth picture) and style.png (stripes); cwd is their folder."""
    y, x = np.mgrid[0:36, 0:48]
    content = np.stack([x * 5, y * 7, 255 - x * 5], axis=2).astype(np.uint8)
    style = np.where((x[:32, :32] // 4 + y[:32, :32] // 4) % 2 == 0, 230, 20)
    style = np.stack([style, style // 2, 255 - style], axis=2).astype(np.uint8)
    Image.fromarray(content).save(tmp_path / "content.png")
    Image.fromarray(style).save(tmp_path / "style.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "content.png", tmp_path / "style.png"
