"""The core install works without TensorFlow, as on a GPU machine with `pip install -e .`."""

import os
import subprocess
import sys
import textwrap

from conftest import ROOT

# Makes every import of TensorFlow, TensorBoard or TFDS fail, as where they are not installed.
BLOCK_TENSORFLOW = textwrap.dedent("""
    import importlib.abc, sys
    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorboard", "tensorflow_datasets"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoTensorFlow())
""")


def test_clu_ml_collections_and_the_entry_points_import_without_tensorflow(tmp_path):
    code = BLOCK_TENSORFLOW + textwrap.dedent(f"""
        import clu, clu.metrics, ml_collections
        from ml_collections import config_flags
        import main, vdm_vae.training.loop, vdm_vae.evaluation.evaluate
        from vdm_vae.training.writers import JsonlWriter, create_writer
        writer = create_writer({str(tmp_path)!r})
        assert [type(w) for w in writer.writers] == [JsonlWriter], writer.writers
        writer.write_scalars(1, {{"train/bpd": 2.5}})
        writer.close()
        assert not [m for m in sys.modules if m.startswith(("tensorflow", "tensorboard"))]
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"train/bpd": 2.5' in (tmp_path / "metrics.jsonl").read_text()


def test_every_module_and_main_import_together():
    """Commands define their flags only when run, so one process (a test run, a notebook) can
    import all of them: two modules defining --workdir at import would clash."""
    code = textwrap.dedent("""
        import importlib, pkgutil
        import main, vdm_vae
        names = [m.name for m in pkgutil.walk_packages(vdm_vae.__path__, "vdm_vae.")]
        for name in names:
            importlib.import_module(name)
        assert {"vdm_vae.evaluation.compare", "vdm_vae.evaluation.fit_prior",
                "vdm_vae.evaluation.sample_fid"} <= set(names)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]


def test_commands_restart_with_their_cpu_settings_before_importing_jax():
    """main.py's imports before its restart (vdm_vae.cpu.env) load neither jax nor the model;
    the package's public names still load theirs on first use."""
    code = textwrap.dedent("""
        import sys
        import main, vdm_vae.cpu.env
        heavy = [m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "orbax", "optax")
                 or m in ("vdm_vae.model.vae", "vdm_vae.training.loop")]
        assert not heavy, heavy
        import vdm_vae
        from vdm_vae import ModelConfig, sample
        from vdm_vae.model.vae import init_params
        from vdm_vae.sampling import sample as sampling_sample
        assert sample is sampling_sample and vdm_vae.init is init_params
        assert ModelConfig.__module__ == "vdm_vae.model.config"
        assert set(vdm_vae.__all__) <= set(dir(vdm_vae))
        try:
            vdm_vae.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("vdm_vae.no_such_name did not raise")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]


def test_training_starts_without_the_evaluation_libraries():
    """scikit-learn, SciPy and matplotlib (seconds to import) wait for the first evaluation."""
    code = textwrap.dedent("""
        import sys
        import vdm_vae.training.loop
        loaded = [m for m in ("sklearn", "scipy", "matplotlib") if m in sys.modules]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
