"""The prior p(w) a run learned with the model: how its components split the test set.

    python experiments/mixture_clusters.py --workdir=RUN [--step=S] [--per-component=8]
        [--sample-steps=100] [--out=DIR]

For a run with a mixture prior (`model.w_prior_components`), assigns each test image to the
component most responsible for its posterior mean, argmax_k N(mu(x); m_k, s_k^2) (the weights
are equal), and reports the clustering accuracy under the best one-to-one map of components
to classes (Hungarian; no label is used to fit anything) with its 95% interval, the normalised
mutual information between components and classes, and for each component its share of the
test set, its majority class and its mean scale. Writes DIR/mixture_clusters.json and
DIR/mixture_components.png: one row per component, largest share of the test set first, of
samples of p(x|w) with w drawn from that component (T = --sample-steps). DIR defaults to
RUN/eval.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from probe_checkpoint import load  # noqa: E402

from vdm_vae.cpu import env as cpu_env  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a run's folder")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--per-component", type=int, default=8, help="samples per component")
    p.add_argument("--sample-steps", type=int, default=100, help="T of the sampler")
    p.add_argument("--batch", type=int, default=500, help="images per encoder call")
    p.add_argument("--out", default=None, help="folder of the JSON and PNG (default RUN/eval)")
    args = p.parse_args(argv)
    for name in ("per_component", "sample_steps", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid: "
                    "expected an int >= 1.")
    return args


def component_log_probs(params: dict, mean: np.ndarray, config) -> np.ndarray:
    """log(1/K) + log N(mu; m_k, s_k^2) of posterior means [N, D] under the run's mixture:
    [N, K]."""
    from vdm_vae.model.mixture_prior import MixturePrior

    prior = MixturePrior(config.w_prior_components, config.w_dim)
    return np.asarray(prior.apply({"params": params["params"]["w_prior"]}, mean,
                                  method=MixturePrior.component_log_probs))


def load_mixture(workdir: str, step=None):
    """The run's checkpoint, refused with a one-line error if its prior is N(0, I):
    ({"params": EMA params}, ModelConfig, step, dataset)."""
    params, config, step, dataset = load(workdir, step)
    if not config.w_prior_components:
        raise SystemExit(f"error: the run in {workdir} has the prior N(0, I) "
                         "(model.w_prior_components=0): there are no components to read.")
    return params, config, step, dataset


def clusters(params: dict, config, images: np.ndarray, labels: np.ndarray,
             batch: int = 500) -> dict:
    """The assignment of images [N, H, W, C] to the mixture's components, scored against their
    labels [N]: accuracy, NMI and, per component, its share, majority class and mean scale."""
    from sklearn.metrics import normalized_mutual_info_score

    from vdm_vae.evaluation.evaluate import posterior
    from vdm_vae.metrics import clusters as clusters_lib
    from vdm_vae.metrics import intervals

    mean, _ = posterior(params, images, config, batch, "encode test")
    assigned = np.argmax(component_log_probs(params, mean, config), axis=-1)
    correct = clusters_lib.matched_cluster_correct(assigned, labels)
    accuracy = intervals.wilson_interval(correct)
    prior = params["params"]["w_prior"]
    components = []
    for k in range(config.w_prior_components):
        members = labels[assigned == k]
        counts = np.bincount(members, minlength=int(labels.max()) + 1)
        components.append({
            "component": k,
            "test_share": float(len(members) / len(labels)),
            "majority_class": int(np.argmax(counts)) if len(members) else None,
            "majority_share": float(counts.max() / len(members)) if len(members) else None,
            "mean_scale": float(np.exp(prior["log_scales"][k]).mean())})
    return {"num_test": int(len(labels)), "num_components": config.w_prior_components,
            "cluster_accuracy": accuracy["mean"],
            "cluster_accuracy_ci": [accuracy["ci_low"], accuracy["ci_high"]],
            "nmi": float(normalized_mutual_info_score(labels, assigned)),
            "components_used": int(len(np.unique(assigned))),
            "components": components}


def component_samples(params: dict, config, result: dict, per_component: int, steps: int,
                      seed: int = 0) -> np.ndarray:
    """uint8 [K * per_component, H, W, C]: per component, largest share of the test set first,
    samples of p(x|w) with w ~ N(m_k, s_k^2); params as `load_mixture` returns them."""
    import jax

    import vdm_vae

    params = params["params"]
    prior = params["w_prior"]
    order = sorted(range(result["num_components"]),
                   key=lambda k: -result["components"][k]["test_share"])
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(seed),
                                       (len(order), per_component, config.w_dim)))
    w = np.concatenate([np.asarray(prior["means"][k]) + np.exp(np.asarray(
        prior["log_scales"][k])) * eps[i] for i, k in enumerate(order)])
    return np.asarray(vdm_vae.sample(params, w, config=config, num_steps=steps,
                                     rng=jax.random.PRNGKey(seed + 1)))


def table(result: dict) -> str:
    low, high = result["cluster_accuracy_ci"]
    lines = [f"{result['workdir']} at step {result['step']}: {result['num_test']} test images, "
             f"{result['components_used']} of {result['num_components']} components used",
             f"cluster accuracy (one-to-one map) {result['cluster_accuracy']:.4f} "
             f"[{low:.4f}, {high:.4f}]; NMI {result['nmi']:.4f}", "",
             "component  test share  majority class (share)  mean scale"]
    for c in sorted(result["components"], key=lambda c: -c["test_share"]):
        major = ("-" if c["majority_class"] is None
                 else f"{c['majority_class']} ({c['majority_share']:.2f})")
        lines.append(f"{c['component']:>9}  {c['test_share']:>10.3f}  "
                     f"{major:>22}  {c['mean_scale']:.3f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpu_env.reexec_with_cpu_settings()
    from vdm_vae.runtime import atomic
    from vdm_vae.runtime.images import image_grid, save_png

    params, config, step, dataset = load_mixture(args.workdir, args.step)
    result = {"workdir": os.path.abspath(args.workdir), "step": int(step)}
    result.update(clusters(params, config, dataset.test_images, dataset.test_labels, args.batch))
    print(table(result))
    out = args.out or os.path.join(args.workdir, "eval")
    os.makedirs(out, exist_ok=True)
    images = component_samples(params, config, result, args.per_component, args.sample_steps)
    save_png(os.path.join(out, "mixture_components.png"), image_grid(images, args.per_component))
    result.update(per_component=args.per_component, sample_steps=args.sample_steps)
    atomic.write_json(os.path.join(out, "mixture_clusters.json"), result)
    print(f"wrote {out}/mixture_clusters.json and {out}/mixture_components.png")


if __name__ == "__main__":
    main()
