"""The GPU check's sampling phase: images at T steps from a training run's EMA parameters.

    python -m benchmarks.gpu_sample WORKDIR --out DIR --samples 1000 --steps 1000 --chunks 4

Samples in `--chunks` calls of one compiled sampler (compile time apart) and prints a JSON line
after each call, so that a phase stopped at its time limit still reports the rate of the calls
it finished; 64 of the first call's images go to DIR/samples.png.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample(workdir: str, out: str, n: int, steps: int, chunks: int):
    """n images at T = steps from the run in workdir (its EMA params; fresh ones if it has no
    checkpoint), in `chunks` calls; a JSON line after each."""
    import jax
    import numpy as np

    from vdm_vae import sampling
    from vdm_vae.model.vae import init_params
    from vdm_vae.runtime.images import image_grid, save_png
    from vdm_vae.training.checkpoints import load, load_run_config

    try:
        params, config = load(workdir)
        source = "checkpoint"
    except FileNotFoundError:
        _, config = load_run_config(workdir)
        params, source = init_params(config, jax.random.PRNGKey(0))["params"], "fresh init"
    variables = {"params": params}
    if n % chunks:
        raise SystemExit(f"--samples={n} is not a multiple of --chunks={chunks}.")
    per_call = n // chunks
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    z = jax.random.normal(keys[0], (n,) + tuple(config.image_shape))
    w = jax.random.normal(keys[1], (n, config.w_dim)) if config.conditional else None
    start = time.perf_counter()
    reverse = sampling.reverse_steps.lower(
        variables, z[:per_call], None if w is None else w[:per_call], keys[2], config=config,
        num_steps=steps, start=0, stop=steps).compile()
    decode = sampling.decode_z0.lower(variables, z[:per_call], keys[2], config=config).compile()
    compile_s = time.perf_counter() - start
    seconds = 0.0
    for done in range(per_call, n + 1, per_call):
        part = slice(done - per_call, done)
        start = time.perf_counter()
        z_0 = reverse(variables, z[part], None if w is None else w[part], keys[2])
        images = np.asarray(decode(variables, z_0, keys[2]))
        seconds += time.perf_counter() - start
        if done == per_call:
            save_png(os.path.join(out, "samples.png"), image_grid(images[:64], 8))
        print(json.dumps({"params": source, "images": n, "images_done": done,
                          "images_per_call": per_call, "T": steps, "compile_s": compile_s,
                          "seconds": seconds, "images_per_s": done / seconds,
                          "backend": jax.default_backend()}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", help="a training run's folder")
    p.add_argument("--out", required=True, help="folder for samples.png")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000, help="T, the reverse steps")
    p.add_argument("--chunks", type=int, default=4, help="calls of the compiled sampler")
    args = p.parse_args(argv)
    sample(args.workdir, args.out, args.samples, args.steps, args.chunks)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
