"""--mode=eval and the learned prior on smoke-trained checkpoints, through the commands."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_train import ROOT, run_main

import vdm_vae

# One xdist worker runs this module (--dist loadgroup), so its trained runs are made once.
pytestmark = pytest.mark.xdist_group("evaluate")

FIGURES = ("samples.png", "guided.png", "reconstruction.png", "tsne.png", "pca.png",
           "w_usage.png", "kl_per_dim.png", "interpolation.png")
KEYS = ("bpd", "bpd_stderr", "bpd_recon", "bpd_prior", "bpd_diff", "bpd_kl_w", "kl_w_nats",
        "active_units", "mutual_info_nats", "kl_per_dim_nats", "probe_linear_acc",
        "probe_knn_acc", "probe_linear_acc_random", "probe_linear_acc_pixels",
        "probe_knn_acc_random", "probe_knn_acc_pixels", "w_usage_profile", "eval_seed",
        "mutual_info_stderr_nats", "probe_linear_acc_ci", "probe_knn_acc_pixels_ci",
        "probe_linear_diff_trained_random", "probe_knn_diff_trained_pixels",
        "probe_linear_acc_pca", "probe_knn_acc_pca", "probe_linear_diff_trained_pca")


def _train(tmp_path_factory, config: str):
    """Trains `config` ("file" or "file:variant" of configs/) in smoke mode."""
    file, _, variant = config.partition(":")
    workdir = str(tmp_path_factory.mktemp("eval") / (variant or file))
    arg = f"{variant},smoke" if variant else "smoke"
    args = [f"--config=configs/{file}.py:{arg}", f"--workdir={workdir}"]
    result = run_main(args)
    assert result.returncode == 0, result.stderr
    return workdir, args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory, "mvdm_oe")


@pytest.fixture(scope="module")
def trained_uncond(tmp_path_factory):
    return _train(tmp_path_factory, "mvdm")


def test_eval_writes_every_key_and_figure(trained, fid_cache):
    workdir, args = trained
    has_fid = _fid_available()
    extra = ["--config.eval.mc_draws=2"] + (["--config.eval.num_fid_samples=8"] if has_fid else [])
    result = run_main(args + ["--mode=eval"] + extra)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert set(KEYS) <= set(m)
    terms = m["bpd_recon"] + m["bpd_prior"] + m["bpd_diff"] + m["bpd_kl_w"]
    np.testing.assert_allclose(m["bpd"], terms, rtol=1e-5)
    np.testing.assert_allclose(m["bpd_kl_w"] * 8 * 8 * np.log(2), m["kl_w_nats"], rtol=1e-3)
    assert m["mc_draws"] == 2 and m["num_test_images"] == 16
    per_image = np.load(os.path.join(workdir, "eval", "bound_per_image.npz"))
    assert per_image["bpd"].shape == (16,) and int(per_image["draws"]) == 2
    np.testing.assert_allclose(per_image["bpd"].mean(), m["bpd"], rtol=1e-12)
    np.testing.assert_allclose(per_image["bpd"].std(ddof=1) / 4, m["bpd_stderr"], rtol=1e-12)
    for probe in ("linear", "knn"):
        low, high = m[f"probe_{probe}_acc_ci"]
        assert 0 <= low <= m[f"probe_{probe}_acc"] <= high <= 1
        diff = m[f"probe_{probe}_diff_trained_random"]
        np.testing.assert_allclose(diff["mean"], m[f"probe_{probe}_acc_trained"]
                                   - m[f"probe_{probe}_acc_random"], atol=1e-12)
    assert m["mutual_info_stderr_nats"] > 0
    assert len(m["kl_per_dim_nats"]) == 8
    assert m["probe_pca_components"] == 8  # as many as w has
    assert set(m["w_usage_profile"]) == {"t", "posterior", "prior", "shuffled"}
    for name in FIGURES:
        assert os.path.getsize(os.path.join(workdir, "eval", name)) > 0, name
    if has_fid:
        assert m["fid"] >= 0
        assert np.load(os.path.join(workdir, "eval", "samples.npz"))["images"].shape == (8, 8, 8, 1)
        # the reference statistics are kept for every run, not in this run's folder
        assert len([n for n in os.listdir(fid_cache) if n.startswith("fid_stats_")]) == 1
        assert not [n for n in os.listdir(os.path.join(workdir, "eval")) if "fid_stats" in n]


def test_unconditional_eval_skips_w_metrics(trained_uncond):
    workdir, args = trained_uncond
    result = run_main(args + ["--mode=eval", "--config.eval.num_test_images=200"])
    assert result.returncode == 0, result.stderr
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        m = json.load(f)
    assert m["bpd_kl_w"] == 0.0 and "kl_w_nats" not in m
    assert m["num_test_images"] == 16
    assert os.path.exists(os.path.join(workdir, "eval", "samples.png"))
    lines = result.stdout.splitlines()
    assert ("warning: config.eval.num_test_images=200 is more than the 16 images of the data: "
            "using 16.") in lines
    assert any(line.startswith("samples.npz and FID skipped: config.eval.num_fid_samples=0")
               for line in lines), lines
    assert any(line.startswith("guided.png skipped") for line in lines), lines
    assert not os.path.exists(os.path.join(workdir, "eval", "samples.npz"))


@pytest.mark.parametrize("make_workdir", ["empty", "missing"])
def test_fit_prior_without_a_run_fails_in_one_line(tmp_path, make_workdir):
    workdir = tmp_path / "run"
    if make_workdir == "empty":
        workdir.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "vdm_vae.evaluation.fit_prior",
                             "--config=configs/mvdm_oe.py:smoke", f"--workdir={workdir}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(workdir) in line, line



def test_fit_prior_with_another_config_is_refused_naming_what_differs(trained):
    workdir, args = trained
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "vdm_vae.evaluation.fit_prior", args[0],
                             f"--workdir={workdir}", "--config.training.seed=3",
                             "--config.training.prefetch_batches=0"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the config or data given differ from the run's "
                           f"{workdir}/config.json: training.seed (run 1, given 3).")
    assert "prefetch_batches" not in line  # how a run is driven may differ

def test_fit_prior_command_reports_the_bound_under_it(trained):
    workdir, args = trained
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "vdm_vae.evaluation.fit_prior", args[0],
                             f"--workdir={workdir}", "--steps=20", "--batch=16", "--hidden=16"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(workdir, "eval", "w_prior.json")) as f:
        report = json.load(f)
    assert {"kl_w_learned_prior_nats", "bpd_kl_w_learned_prior", "kl_w_standard_prior_nats",
            "kl_w_learned_prior_stderr_nats"} <= set(report)
    assert report["kl_num_test_images"] == 16 and report["kl_draws"] == 16
    assert report["step"] == 2  # the checkpoint's, as in every file it writes
    assert report["kl_w_learned_prior_nats"] >= -3 * report["kl_w_learned_prior_stderr_nats"]
    assert "fitting the prior" in result.stderr
    assert vdm_vae.load_fitted_prior(workdir)[1].w_dim == 8
    assert os.path.exists(os.path.join(workdir, "eval", "samples_learned_prior.png"))
    with np.load(os.path.join(workdir, "eval", "w_prior_per_image.npz")) as f:
        kl = f["bpd_kl_w_learned_prior"]
        assert int(f["step"]) == 2
    assert kl.shape == (16,)
    np.testing.assert_allclose(kl.mean(), report["bpd_kl_w_learned_prior"], rtol=1e-6)


def _eval_files(workdir: str) -> dict:
    """{path under eval/: its bytes' hash} of the run's eval/ folder."""
    import hashlib

    found = {}
    for folder, _, names in os.walk(os.path.join(workdir, "eval")):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return found


def test_eval_with_another_config_or_data_is_refused_naming_what_differs(trained):
    workdir, args = trained
    before = _eval_files(workdir)
    another_data = args + ["--config.data.synthetic_test=24", "--config.training.seed=3"]
    another_config = ["--config=configs/mvdm.py:smoke", f"--workdir={workdir}"]
    for given, expected in (
            (another_data, ["data.synthetic_test (run 16, given 24)",
                            "training.seed (run 1, given 3)",
                            "data (run 'synthetic' train [64, 8, 8, 1] test [16, 8, 8, 1]"]),
            (another_config, ["name (run 'mvdm_oe:smoke', given 'mvdm:smoke')",
                              "model.encoder.kind"])):
        result = run_main(given + ["--mode=eval"])
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: the config or data given differ from the run's "
                               f"{workdir}/config.json: ") and "--allow_config_change" in line
        assert all(e in line for e in expected), line
    assert _eval_files(workdir) == before


def test_re_evaluation_is_whole_and_keeps_other_commands_files_of_its_step(trained):
    """fit_prior's and sample_fid's files in eval/ (step 2) are carried into the new eval/;
    those of another step move to eval_earlier/step_<N>/; every file records step 2."""
    from vdm_vae.evaluation import eval_dir

    workdir, args = trained
    eval_path = os.path.join(workdir, "eval")
    os.makedirs(eval_path, exist_ok=True)
    for name, step in (("fid_standard_T99", 2), ("fid_standard_T98", 1)):
        os.makedirs(os.path.join(eval_path, name), exist_ok=True)
        with open(os.path.join(eval_path, name, "plan.json"), "w") as f:
            json.dump({"checkpoint_step": step}, f)
    with open(os.path.join(eval_path, "notes.txt"), "w") as f:
        f.write("a user's file, of no step")
    fitted = {n: eval_dir.recorded_step(os.path.join(eval_path, n))
              for n in ("w_prior.json", "w_prior_per_image.npz", "samples_learned_prior.png")
              if os.path.exists(os.path.join(eval_path, n))}
    result = run_main(args + ["--mode=eval", "--config.training.seed=5",
                              "--allow_config_change"])
    assert result.returncode == 0, result.stderr
    assert ("warning: evaluating with a config or data that differ from the run's: "
            "training.seed (run 1, given 5).") in result.stdout.splitlines()
    with open(os.path.join(eval_path, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 2 and metrics["config_changes"] == [
        "training.seed (run 1, given 5)"]
    assert eval_dir.recorded_step(os.path.join(eval_path, "fid_standard_T99")) == 2
    assert not os.path.exists(os.path.join(eval_path, "fid_standard_T98"))
    assert os.path.exists(os.path.join(workdir, "eval_earlier", "step_1", "fid_standard_T98",
                                       "plan.json"))
    assert os.path.exists(os.path.join(eval_path, "notes.txt"))
    assert fitted == {n: 2 for n in fitted}  # fit_prior's, if its test ran first
    for name in fitted:
        assert eval_dir.recorded_step(os.path.join(eval_path, name)) == 2
    for name in os.listdir(eval_path):
        if name in eval_dir.EVALUATION_FILES:
            assert eval_dir.recorded_step(os.path.join(eval_path, name)) == 2, name
    assert not [n for n in os.listdir(workdir) if n.startswith("eval.")]


def test_sigterm_during_eval_keeps_the_previous_evaluation(trained):
    workdir, args = trained
    before = _eval_files(workdir)
    previous = (json.load(open(os.path.join(workdir, "eval", "metrics.json")))["step"]
                if os.path.exists(os.path.join(workdir, "eval", "metrics.json")) else None)
    proc = run_main(args + ["--mode=eval"], wait=False)
    for line in proc.stdout:  # stderr too: stop once the bound is being computed
        if line.startswith("test bound:"):
            break
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == 143, out
    kept = (f"eval/ keeps the evaluation of step {previous}" if previous is not None
            else "no eval/ was written")
    assert [line for line in out.splitlines() if line.startswith("Signal")] == [
        f"Signal 15: evaluation stopped; {kept}."], out
    assert "Traceback" not in out
    assert _eval_files(workdir) == before
    assert not [n for n in os.listdir(workdir) if n.startswith("eval.")]


def test_compare_command_pairs_an_encoder_run_with_an_unconditional_one(trained,
                                                                        trained_uncond):
    oe, uncond = trained[0], trained_uncond[0]
    out = os.path.join(os.path.dirname(oe), "compare.json")
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "vdm_vae.evaluation.compare",
                             f"--workdirs={oe},{oe}",
                             f"--baseline={uncond}", f"--out={out}", "--draws=2"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        c = json.load(f)
    assert set(c["runs"]) == {"mvdm_oe", "mvdm"} and c["baseline"] == "mvdm"  # oe once
    assert c["num_images"] == 16 and c["draws"] == 2
    name = next(n for n in c["runs"] if n != c["baseline"])
    runs, diff = c["runs"], c["differences"][name]
    for term in ("bpd", "bpd_recon", "bpd_prior", "bpd_diff", "bpd_kl_w"):
        np.testing.assert_allclose(diff[term]["mean"], runs[name][term]["mean"]
                                   - runs[c["baseline"]][term]["mean"], atol=1e-9)
        assert diff[term]["ci_low"] <= diff[term]["mean"] <= diff[term]["ci_high"]
    assert diff["bpd"]["stderr"] < diff["bpd"]["unpaired_stderr"]
    assert runs[c["baseline"]]["bpd_kl_w"]["mean"] == 0.0 < runs[name]["bpd_kl_w"]["mean"]
    with open(out[:-5] + ".md") as f:
        assert f"bpd - bpd({c['baseline']})" in f.read()



def _compare(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "vdm_vae.evaluation.compare", *args], cwd=ROOT,
                          env=env,
                          capture_output=True, text=True, timeout=600)


def test_compare_at_an_earlier_step_loads_that_checkpoint(trained, trained_uncond, tmp_path):
    oe, uncond = trained[0], trained_uncond[0]
    results = {}
    for step in ("", "1"):
        out = str(tmp_path / f"compare{step}.json")
        result = _compare(f"--workdirs={oe}", f"--baseline={uncond}", f"--out={out}",
                          "--num_images=8", "--draws=1", *([f"--step={step}"] if step else []))
        assert result.returncode == 0, result.stderr
        with open(out) as f:
            results[step] = json.load(f)
    assert set(results[""]["steps"].values()) == {2}
    assert set(results["1"]["steps"].values()) == {1}
    assert results["1"]["runs"]["mvdm_oe"]["bpd"]["mean"] != \
        results[""]["runs"]["mvdm_oe"]["bpd"]["mean"]
    result = _compare(f"--workdirs={oe}", f"--baseline={uncond}", "--num_images=8", "--step=7")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: step=7 has no checkpoint") and "[1, 2]" in lines[-1]


def test_probe_checkpoint_probes_a_chosen_step_beside_pixels_and_pca(trained, trained_uncond):
    from conftest import load_experiment

    probe_checkpoint = load_experiment("probe_checkpoint")
    result = probe_checkpoint.probe(trained[0], step=1)
    assert result["step"] == 1 and result["probe_pca_components"] == 8
    for kind in ("linear", "knn"):
        for name in ("trained", "pixels", "pca"):
            low, high = result[f"probe_{kind}_acc_{name}_ci"]
            assert 0 <= low <= result[f"probe_{kind}_acc_{name}"] <= high <= 1
        assert "mean" in result[f"probe_{kind}_diff_trained_pca"]
    assert "PCA 8" in probe_checkpoint.table(result)
    with pytest.raises(SystemExit, match="has no encoder"):
        probe_checkpoint.probe(trained_uncond[0])

def test_readability_probes_the_input_of_the_encoders_last_dense(trained, trained_uncond):
    from conftest import load_experiment

    probe_checkpoint = load_experiment("probe_checkpoint")
    params, config = vdm_vae.load(trained[0])
    images = np.random.default_rng(0).integers(0, 256, (6,) + config.image_shape, dtype=np.uint8)
    mu, features = probe_checkpoint.encoder_features({"params": params}, images, config, batch=4)
    mean, _ = vdm_vae.encode(params, images, config=config)
    np.testing.assert_allclose(mu, mean, rtol=1e-5, atol=1e-6)
    dense = params["encoder"]["dense"]
    out = features @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    np.testing.assert_allclose(out[:, :config.w_dim], mean, rtol=1e-4, atol=1e-5)

    result = probe_checkpoint.readability(trained[0], step=1)
    assert result["step"] == 1 and result["w_dim"] == config.w_dim
    assert result["features_dim"] == features.shape[1] > config.w_dim
    for name in ("linear_mu", "mlp_mu", "linear_features"):
        low, high = result[f"{name}_ci"]
        assert 0 <= low <= result[name] <= high <= 1
    assert "over linear on mu" in probe_checkpoint.readability_table(result)
    with pytest.raises(SystemExit, match="has no encoder"):
        probe_checkpoint.readability(trained_uncond[0])


def _fid_available() -> bool:
    try:
        from vdm_vae.metrics import fid

        fid.weights_path()
        return True
    except Exception:  # noqa: BLE001 - any missing piece means the fid extra is not installed
        return False


@pytest.fixture(scope="module")
def trained_mixture(tmp_path_factory):
    return _train(tmp_path_factory, "mnist_cpu:c30_mix10")


def test_mixture_clusters_reads_the_components_of_a_learned_prior(trained_mixture, trained,
                                                                  tmp_path):
    from conftest import load_experiment

    mixture_clusters = load_experiment("mixture_clusters")
    out = str(tmp_path / "clusters")
    done = subprocess.run(
        [sys.executable, "experiments/mixture_clusters.py", f"--workdir={trained_mixture[0]}",
         "--per-component=2", "--sample-steps=2", f"--out={out}"],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "cluster accuracy" in done.stdout
    with open(os.path.join(out, "mixture_clusters.json")) as f:
        result = json.load(f)
    k = result["num_components"]
    assert k == 10 and len(result["components"]) == k
    assert sum(c["test_share"] for c in result["components"]) == pytest.approx(1.0)
    low, high = result["cluster_accuracy_ci"]
    assert 0 <= low <= result["cluster_accuracy"] <= high <= 1

    from PIL import Image

    grid = np.asarray(Image.open(os.path.join(out, "mixture_components.png")))
    height = vdm_vae.load(trained_mixture[0])[1].image_shape[0]
    assert grid.shape[:2] == (k * (height + 1) + 1, 2 * (height + 1) + 1)
    with pytest.raises(SystemExit, match="N\\(0, I\\)"):
        mixture_clusters.load_mixture(trained[0])
