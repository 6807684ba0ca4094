"""A trained model in a minute: one figure from shipped weights (or a run's workdir).

  python -m vdm_vae.demo --out demo.png                      # the shipped MNIST encoder run
  python -m vdm_vae.demo --weights=runs/mnist_cpu --out d.png

Rows, each of --num images (DPM-Solver++, --steps network evaluations per image):
  1. samples with w from the prior fitted after training (N(0, I) where none was fitted);
  2. test images x;
  3. their reconstructions from (mu(x), z_1): z_1 by DDIM inversion, back by the same ODE;
  4. guided generations: w = mu(x) of row 2, fresh noise;
  5. an interpolation between the first two test images: w linearly, z_1 spherically;
  6. the same with z_1 fixed (the first image's) and only w moved: what w holds.
"""

import argparse
import time

import numpy as np


def slerp(a, b, fractions):
    """Spherical interpolation between noise codes a, b [H,W,C] at fractions [K] -> [K,H,W,C]."""
    flat_a, flat_b = a.ravel(), b.ravel()
    cos = np.dot(flat_a, flat_b) / (np.linalg.norm(flat_a) * np.linalg.norm(flat_b))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    out = [(np.sin((1 - f) * theta) * a + np.sin(f * theta) * b) / np.sin(theta)
           for f in fractions]
    return np.stack(out)


def rows(weights: str, num: int, steps: int, seed: int) -> dict:
    """{row name: uint8 images [num, H, W, C]} for the figure (module docstring)."""
    import jax

    from vdm_vae import pretrained, sampling

    params, config = pretrained.load(weights)
    if not config.encoder.single_code:
        raise ValueError(f"--weights={weights!r}: the demo needs an encoder with one code per "
                         "image (encoder.kind='conv').")
    try:
        prior = pretrained.load_fitted_prior(weights)
    except (ValueError, FileNotFoundError):
        prior = None
    if weights in pretrained.available():
        images = pretrained.test_images(weights)[:num]
    else:
        from vdm_vae.data import load_dataset
        from vdm_vae.training.checkpoints import load_run_config

        images = load_dataset(load_run_config(weights)[0]["data"]).test_images[:num]
    key = jax.random.PRNGKey(seed)
    ode = dict(config=config, num_steps=steps, sampler="dpm_solver")
    out = {"samples": sampling.sample(params, config=config, rng=key, num_steps=steps,
                                      num_samples=num, fitted_prior=prior, sampler="dpm_solver")}
    mean, _ = sampling.encode(params, images, config=config)
    z_1 = sampling.encode_to_noise(params, images, mean, **ode)
    out["test images"] = np.asarray(images)
    out["reconstructions"] = sampling.decode_from_noise(params, z_1, mean, **ode)
    out["guided"] = sampling.sample(params, mean, config=config, rng=jax.random.fold_in(key, 1),
                                    num_steps=steps, sampler="dpm_solver")
    fractions = np.linspace(0.0, 1.0, num)
    mean, z_1 = np.asarray(mean), np.asarray(z_1)
    w_line = np.stack([(1 - f) * mean[0] + f * mean[1] for f in fractions])
    out["interpolation"] = sampling.decode_from_noise(
        params, slerp(z_1[0], z_1[1], fractions), w_line, **ode)
    out["w only"] = sampling.decode_from_noise(
        params, np.repeat(z_1[:1], num, axis=0), w_line, **ode)
    return {name: np.asarray(images, np.uint8) for name, images in out.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mnist", help="shipped weights' name or a workdir")
    parser.add_argument("--out", default="demo.png", help="the figure (PNG)")
    parser.add_argument("--num", type=int, default=8, help="images per row (>= 2)")
    parser.add_argument("--steps", type=int, default=25, help="network evaluations per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num < 2:
        parser.error(f"--num={args.num}: expected an int >= 2 (the interpolation needs two)")
    if args.steps < 1:
        parser.error(f"--steps={args.steps}: expected a positive int")
    from vdm_vae.cpu import env as cpu_env

    cpu_env.reexec_with_cpu_settings()
    from vdm_vae.runtime import cli
    from vdm_vae.runtime.images import image_grid, save_png

    start = time.time()
    figure = cli.run_or_exit(lambda: rows(args.weights, args.num, args.steps, args.seed))
    stacked = np.concatenate(list(figure.values()))
    save_png(args.out, image_grid(stacked, ncol=args.num))
    print(f"{args.out}: rows {', '.join(figure)}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
