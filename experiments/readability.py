"""Is what w carries linearly readable? Probes of one checkpoint that locate a low linear probe.

    python experiments/readability.py --workdir=RUN [--step=S] [--out=readability.json]

On the EMA parameters of an encoder run (`encoder.kind="conv"`), fitted on every training image
and scored on every test image, each with its 95% Wilson interval:

  - linear probe on mu(x), as `main.py --mode=eval` reports it;
  - one-hidden-layer MLP probe on mu(x) (`probes.mlp_probe_correct`): whether what the linear
    probe misses is in mu(x) at all;
  - linear probe on the encoder's features before its last Dense (conv_out, flattened,
    [N, 7 * 7 * out_channels] for the MNIST CPU protocol): whether the encoder's features are
    linearly readable before they are projected to w_dim dimensions;

and the paired differences of the last two to the first. A high MLP probe beside a low linear
one says that w carries the class but not along straight lines; a high linear probe on the
features says that the projection to w is where linear readability goes. The features are
wide, so their probe gains from width alone (a collapsed run's features are readable too):
compare them across runs, not with mu(x)'s width.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vdm_vae import cpu_env  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a run's folder")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--batch", type=int, default=500, help="images per encoder call")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error(f"--batch={args.batch} is invalid: expected an int >= 1.")
    return args


def encoder_features(params, images: np.ndarray, config, batch: int):
    """(mu [N, w_dim], the encoder's conv_out features flattened [N, F]) of uint8 images."""
    import jax

    from vdm_vae.model import VDMVAE
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
    from vdm_vae import data as data_lib
    from vdm_vae.checkpoints import load_run_config, load_with_step
    from vdm_vae.metrics import intervals, probes

    params, model_config, step = load_with_step(workdir, step)
    if model_config.encoder.kind != "conv":
        raise SystemExit(f"error: encoder.kind={model_config.encoder.kind!r} in {workdir}: "
                         "expected 'conv' (an encoder of x alone).")
    config, _ = load_run_config(workdir)
    dataset = data_lib.load_dataset(config["data"])
    if dataset.train_labels is None or dataset.test_labels is None:
        raise SystemExit(f"error: the data set {dataset.name!r} has no labels to probe.")
    params = {"params": params}
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


def table(result: dict) -> str:
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
    result = readability(args.workdir, args.step, args.batch)
    print(table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
