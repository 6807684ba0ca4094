"""Linear and k-NN probes on mu(x) of one checkpoint, fitted on every training image.

    python experiments/probe_checkpoint.py --workdir=RUN [--step=S] [--out=probe.json]

For a run that has not finished (or at an earlier kept step, see
training.checkpoints_keep_period), the probes of `main.py --mode=eval` without the rest of
its evaluation: mu(x) of the EMA parameters on all training and test images, a linear
(logistic regression) and a 5-NN probe, beside the same probes on the raw pixels and on the
pixels' top-w_dim principal components, each with its 95% interval and the paired difference
to mu(x). Prints a table; --out writes the JSON.
"""

import argparse
import json
import os
import sys

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


def probe(workdir: str, step=None, batch: int = 500) -> dict:
    from vdm_vae import data as data_lib
    from vdm_vae.checkpoints import load_run_config, load_with_step
    from vdm_vae.evaluate import pixel_features, posterior, probe_metrics

    params, model_config, step = load_with_step(workdir, step)
    if not model_config.conditional:
        raise SystemExit(f"error: the run in {workdir} has no encoder: there is no mu(x) to probe.")
    config, _ = load_run_config(workdir)
    dataset = data_lib.load_dataset(config["data"])
    if dataset.train_labels is None or dataset.test_labels is None:
        raise SystemExit(f"error: the data set {dataset.name!r} has no labels to probe.")
    params = {"params": params}
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


def main(argv=None):
    args = parse_args(argv)
    cpu_env.reexec_with_cpu_settings()
    result = probe(args.workdir, args.step, args.batch)
    print(table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
