"""Packaging for minivgg and its engine, miniautograd.

The folder autograd/ is installed under the import name ``miniautograd``: the name ``autograd``
belongs to the HIPS autograd package on PyPI, and installing over it would break users' setups.
"""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

setup(
    name="minivgg",
    version="0.1.0",
    description="A from-scratch NumPy/CuPy engine that runs VGG-19 and Gatys neural style transfer",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["miniautograd", "miniautograd.gradcheck", "minivgg", "minivgg.stylize"],
    package_dir={"miniautograd": "autograd", "minivgg": "minivgg"},
    install_requires=["numpy>=1.23", "scipy>=1.9", "pillow>=9.1", "tqdm>=4.60"],
    extras_require={
        # CuPy's wheel for CUDA 12; see the README for other CUDA versions.
        "gpu": ["cupy-cuda12x>=13"],
        "test": ["pytest>=7", "hypothesis>=6"],
        # PyTorch only as an optional comparison in bench/ (CPU build kept locally on our machines).
        "bench": ["torch"],
    },
)
