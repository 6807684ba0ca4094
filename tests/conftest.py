"""Tiny model configurations and shared helpers for fast CPU tests."""

import dataclasses
import os
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository's top-level folders (benchmarks/, configs/) are not installed: import them, and
# this checkout's vdm_vae, from here whatever the installed package points at.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from vdm_vae.model.config import EncoderConfig, LossConfig, ModelConfig  # noqa: E402
from vdm_vae.model.vae import init_params  # noqa: E402

# The project's shell scripts run $PYTHON: the interpreter running the tests, so that they
# work from a virtual environment that is not activated.
os.environ["PYTHON"] = sys.executable

# One persistent compilation cache for the test processes and every command they start: many
# tests compile the same tiny programs in separate processes.
jax.config.update("jax_compilation_cache_dir", os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".pytest_cache", "jax")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ.setdefault(
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")))

# Tests build hundreds of tiny programs: skip LLVM's optimisations, which cost a third of a
# smoke run's time and nothing the tests check. XLA reads the flags when the backend starts
# (not at import), and subprocesses that copy this environment get them too.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(
    f for f in (os.environ.get("XLA_FLAGS", ""), TEST_XLA_FLAGS) if f)

IMAGE_SHAPE = (8, 8, 1)
W_DIM = 8


def tiny_config(kind: str = "none", image_shape=IMAGE_SHAPE, **overrides) -> ModelConfig:
    """A ModelConfig small enough to init and run in well under a second on CPU.

    Args:
      kind: encoder kind ("none", "conv" or "conv_time").
      image_shape: (H, W, C).
      **overrides: ModelConfig fields to replace (e.g. gamma_type, sm_n_timesteps, loss).
    """
    encoder = EncoderConfig(kind=kind, block_out_channels=16, layers_per_block=1,
                            norm_num_groups=8, w_dim=W_DIM)
    base = ModelConfig(image_shape=image_shape, sm_n_layer=1, sm_n_embd=16, sm_norm_groups=8,
                       encoder=encoder, loss=LossConfig())
    return dataclasses.replace(base, **overrides)


def load_module(path: str):
    """The Python file at `path` as a module (for folders that are not packages)."""
    import importlib.util

    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_experiment(name: str, folder: str = "experiments"):
    """<folder>/<name>.py as a module (experiments/ is not a package; benchmarks/ scripts run
    as files too)."""
    return load_module(os.path.join(ROOT, folder, f"{name}.py"))


def random_images(seed: int, batch: int, image_shape=IMAGE_SHAPE) -> np.ndarray:
    """uint8 images [batch, H, W, C] with pixels uniform over {0..255}."""
    return np.random.default_rng(seed).integers(0, 256, (batch,) + tuple(image_shape),
                                                dtype=np.uint8)


def perturb(tree, seed: int, scale: float = 0.1):
    """Adds Gaussian noise to every leaf, so that zero-initialised weights become active."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, noisy)


@pytest.fixture(scope="session", autouse=True)
def fid_cache(tmp_path_factory):
    """Evaluations in tests keep their FID reference statistics in a temporary folder."""
    path = str(tmp_path_factory.mktemp("fid_cache"))
    os.environ["VDM_VAE_FID_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def uncond():
    """(config, variables) of a tiny unconditional model."""
    config = tiny_config("none")
    return config, init_params(config, jax.random.PRNGKey(0))


@pytest.fixture(scope="session")
def cond():
    """(config, variables) of a tiny conditional model with encoder E(x)."""
    config = tiny_config("conv")
    return config, init_params(config, jax.random.PRNGKey(1))
