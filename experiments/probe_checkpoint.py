"""Linear and k-NN probes on mu(x) of one checkpoint, fitted on every training image.

    python experiments/probe_checkpoint.py --workdir=RUN [--step=S] [--readability] [--out=F.json]

For a run that has not finished (or at an earlier kept step, see
training.checkpoints_keep_period), the probes of `main.py --mode=eval` without the rest of
its evaluation: mu(x) of the EMA parameters on all training and test images, a linear
(logistic regression) and a 5-NN probe, beside the same probes on the raw pixels and on the
pixels' top-w_dim principal components, each with its 95% interval and the paired difference
to mu(x). Prints a table; --out writes the JSON.

--readability asks instead where a low linear probe comes from (`encoder.kind="conv"`):
beside the linear probe on mu(x), a one-hidden-layer MLP probe on mu(x)
(`probes.mlp_probe_correct`: is the class in mu(x) at all?) and a linear probe on the encoder's
features before its last Dense (conv_out, flattened; [N, 7 * 7 * out_channels] in the MNIST
CPU protocol: are they readable before the projection to w_dim dimensions?), with the paired
differences to the first. The probes read the deterministic mean, not w, so a collapsed run's
mu(x) can still be read; and wide features are readable from width alone: compare across runs.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vdm_vae.cpu import env as cpu_env  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a run's folder")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--batch", type=int, default=500, help="images per encoder call")
    p.add_argument("--readability", action="store_true",
                   help="MLP probe on mu(x) and linear probe on the encoder's features instead")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error(f"--batch={args.batch} is invalid: expected an int >= 1.")
    return args


def load(workdir: str, step=None):
    """({"params": EMA params}, ModelConfig, step, the run's labelled data set)."""
    from vdm_vae import data as data_lib
    from vdm_vae.training.checkpoints import load_run_config, load_with_step

    params, model_config, step = load_with_step(workdir, step)
    if not model_config.conditional:
        raise SystemExit(f"error: the run in {workdir} has no encoder: there is no mu(x) to probe.")
    config, _ = load_run_config(workdir)
    dataset = data_lib.load_dataset(config["data"])
    if dataset.train_labels is None or dataset.test_labels is None:
        raise SystemExit(f"error: the data set {dataset.name!r} has no labels to probe.")
    return {"params": params}, model_config, step, dataset


def probe(workdir: str, step=None, batch: int = 500) -> dict:
    from vdm_vae.evaluation.evaluate import pixel_features, posterior, probe_metrics

    params, model_config, step, dataset = load(workdir, step)
    train_mean, _ = posterior(params, dataset.train_images, model_config, batch, "encode train")
    test_mean, _ = posterior(params, dataset.test_images, model_config, batch, "encode test")
    features = {"trained": (train_mean, test_mean),
                **pixel_features(dataset.train_images, dataset.test_images, model_config.w_dim)}
    result = probe_metrics(features, dataset.train_labels, dataset.test_labels)
    result.update(workdir=os.path.abspath(workdir), step=int(step),
                  num_train=len(train_mean), num_test=len(test_mean),
                  probe_pca_components=features["pca"][0].shape[1])
    return result


def table(result: dict) -> str:
    lines = [f"{result['workdir']} at step {result['step']}: probes fitted on "
             f"{result['num_train']} training images, scored on {result['num_test']} test images",
             "", "features             linear [95% CI]          5-NN [95% CI]"]
    names = {"trained": "mu(x)", "pixels": "pixels",
             "pca": f"pixels, PCA {result['probe_pca_components']}"}
    for key, name in names.items():
        cells = []
        for kind in ("linear", "knn"):
            low, high = result[f"probe_{kind}_acc_{key}_ci"]
            cells.append(f"{result[f'probe_{kind}_acc_{key}']:.4f} [{low:.4f}, {high:.4f}]")
        lines.append(f"{name:<20} {cells[0]:<24} {cells[1]}")
    return "\n".join(lines)


def encoder_features(params, images: np.ndarray, config, batch: int):
    """(mu [N, w_dim], the encoder's conv_out features flattened [N, F]) of uint8 images."""
    import jax

    from vdm_vae.model.vae import VDMVAE
    from vdm_vae.sampling import check_images

    @jax.jit
    def both(images):
        (mean, _), state = VDMVAE(config).apply(
            params, images, None, method=VDMVAE.encode,
            capture_intermediates=lambda module, _: module.name == "conv_out")
        (features,) = jax.tree_util.tree_leaves(state["intermediates"])
        return mean, features.reshape(features.shape[0], -1)

    means, features = [], []
    for start in range(0, len(images), batch):
        mean, feature = both(check_images(images[start:start + batch], config))
        means.append(np.asarray(mean))
        features.append(np.asarray(feature))
    return np.concatenate(means), np.concatenate(features)


def readability(workdir: str, step=None, batch: int = 500) -> dict:
    """The --readability probes (see the module docstring) with intervals and differences."""
    from vdm_vae.metrics import intervals, probes

    params, model_config, step, dataset = load(workdir, step)
    if not model_config.encoder.single_code:
        raise SystemExit(f"error: encoder.kind={model_config.encoder.kind!r} in {workdir}: "
                         "expected 'conv' (an encoder of x alone).")
    train_mu, train_h = encoder_features(params, dataset.train_images, model_config, batch)
    test_mu, test_h = encoder_features(params, dataset.test_images, model_config, batch)
    labels = dataset.train_labels, dataset.test_labels
    correct = {
        "linear_mu": probes.linear_probe_correct(train_mu, labels[0], test_mu, labels[1]),
        "mlp_mu": probes.mlp_probe_correct(train_mu, labels[0], test_mu, labels[1]),
        "linear_features": probes.linear_probe_correct(train_h, labels[0], test_h, labels[1],
                                                       max_iter=1000),
    }
    result = {"workdir": os.path.abspath(workdir), "step": int(step),
              "w_dim": int(train_mu.shape[1]), "features_dim": int(train_h.shape[1]),
              "num_train": len(train_mu), "num_test": len(test_mu)}
    for name, c in correct.items():
        stats = intervals.wilson_interval(c)
        result[name] = stats["mean"]
        result[f"{name}_ci"] = [stats["ci_low"], stats["ci_high"]]
    for name in ("mlp_mu", "linear_features"):
        result[f"{name}_minus_linear_mu"] = intervals.paired_accuracy_difference(
            correct[name], correct["linear_mu"])
    return result


def readability_table(result: dict) -> str:
    rows = [("linear_mu", f"linear on mu(x) [{result['w_dim']}]"),
            ("mlp_mu", f"MLP (256) on mu(x) [{result['w_dim']}]"),
            ("linear_features", f"linear on encoder features [{result['features_dim']}]")]
    lines = [f"{result['workdir']} at step {result['step']}: fitted on {result['num_train']} "
             f"training images, scored on {result['num_test']} test images", ""]
    for key, name in rows:
        low, high = result[f"{key}_ci"]
        line = f"{name:<38} {result[key]:.4f} [{low:.4f}, {high:.4f}]"
        if key != "linear_mu":
            d = result[f"{key}_minus_linear_mu"]
            line += (f"   {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
                     " over linear on mu")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpu_env.reexec_with_cpu_settings()
    if args.readability:
        result = readability(args.workdir, args.step, args.batch)
        print(readability_table(result))
    else:
        result = probe(args.workdir, args.step, args.batch)
        print(table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
