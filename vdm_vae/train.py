"""The training loop: validate, restore or init, train with periodic log / eval / save."""

import contextlib
import signal
import time
from typing import Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vdm_vae import data as data_lib
from vdm_vae.checkpoints import Checkpointer, load_run_config, save_run_config
from vdm_vae.images import image_grid
from vdm_vae.model_config import ModelConfig, model_config_from_dict, model_config_to_dict
from vdm_vae.platforms import resolve_substeps
from vdm_vae.sampling import encode, sample
from vdm_vae.train_step import (
    TrainState,
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    replicate,
)
from vdm_vae.writers import create_writer, format_progress


def _require(ok: bool, field: str, value, accepted: str):
    if not ok:
        raise ValueError(f"config.{field}={value!r} is invalid: expected {accepted}.")


def validate_training_config(config: ml_collections.ConfigDict):
    """Checks the training and optimizer fields before any work starts."""
    t, o = config.training, config.optimizer
    for name in ("num_steps_train", "batch_size_train", "batch_size_eval",
                 "steps_per_logging", "steps_per_eval", "steps_per_save", "checkpoints_to_keep"):
        _require(getattr(t, name) > 0, f"training.{name}", getattr(t, name), "a positive int")
    _require(t.substeps >= 0, "training.substeps", t.substeps, "an int >= 0 (0: per platform)")
    _require(0.0 <= t.beta_warmup_fraction <= 1.0, "training.beta_warmup_fraction",
             t.beta_warmup_fraction, "a float in [0, 1]")
    _require(o.learning_rate > 0, "optimizer.learning_rate", o.learning_rate, "a float > 0")
    _require(0.0 <= o.ema_rate < 1.0, "optimizer.ema_rate", o.ema_rate, "a float in [0, 1)")
    _require(o.ema_warmup_power >= 0, "optimizer.ema_warmup_power", o.ema_warmup_power,
             "a float >= 0 (0: fixed rate)")
    _require(o.lr_warmup_steps >= 0, "optimizer.lr_warmup_steps", o.lr_warmup_steps,
             "an int >= 0")


def _check_same_model(workdir: str, model_config: ModelConfig):
    """A workdir resumes only with the model it was started with."""
    try:
        _, saved = load_run_config(workdir)
    except FileNotFoundError:
        return
    old = flax.traverse_util.flatten_dict(model_config_to_dict(saved), sep=".")
    new = flax.traverse_util.flatten_dict(model_config_to_dict(model_config), sep=".")
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise ValueError(f"config.model.{key}={new.get(key)!r} does not match the run in "
                             f"{workdir} (saved: {old.get(key)!r}); use a new workdir.")


class StopSignals(contextlib.AbstractContextManager):
    """Turns SIGINT / SIGTERM into a flag the loop checks, so it can save and exit."""

    def __init__(self):
        self.received: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def _unreplicate(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def _first_non_finite(history) -> Optional[int]:
    for step, metrics in history:
        if not bool(np.all(metrics["finite"])):
            return step
    return None


def _mean_metrics(history) -> dict:
    keys = [k for k in history[0][1] if k != "finite"]
    return {k: float(np.mean([np.mean(m[k]) for _, m in history])) for k in keys}


def evaluate_during_training(params, dataset, model_config: ModelConfig, config, rng) -> dict:
    """Test bound on EMA params over a few batches: {'eval/<name>': float}."""
    devices = jax.local_device_count()
    per_device = data_lib.check_batch_size(config.training.batch_size_eval, devices,
                                           "config.training.batch_size_eval")
    eval_step = make_eval_step(model_config)
    batches = data_lib.eval_batches(dataset.test_images, None,
                                    batch_size=per_device * devices)
    rows = []
    for i, (images, _) in enumerate(batches):
        if i >= config.training.num_eval_batches or images.shape[0] < per_device * devices:
            break
        images = images.reshape((devices, per_device) + images.shape[1:])
        rngs = jax.random.split(jax.random.fold_in(rng, i), devices)
        rows.append(_unreplicate(eval_step(params, images, rngs)))
    return {f"eval/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}


def sample_figures(params, dataset, model_config: ModelConfig, config, rng) -> dict:
    """PNG grids: samples with w from the prior, and guided generations (if conditional)."""
    n, steps = config.training.eval_num_samples, config.training.eval_sample_steps
    rng_w, rng_s, rng_g = jax.random.split(rng, 3)
    w = (jax.random.normal(rng_w, (n, model_config.w_dim)) if model_config.conditional
         else None)
    images = sample(params, w, config=model_config, rng=rng_s, num_steps=steps, num_samples=n)
    grids = {"samples": image_grid(np.asarray(images), int(np.ceil(np.sqrt(n))))}
    if model_config.conditional and model_config.encoder.kind == "conv":
        rows, per_row = min(8, len(dataset.test_images)), 7
        guide = dataset.test_images[:rows]
        mean, _ = encode(params, guide, config=model_config)
        out = sample(params, jnp.repeat(mean, per_row, axis=0), config=model_config,
                     rng=rng_g, num_steps=steps)
        out = np.asarray(out).reshape((rows, per_row) + guide.shape[1:])
        tiles = np.concatenate([guide[:, None], out], axis=1).reshape((-1,) + guide.shape[1:])
        grids["guided"] = image_grid(tiles, per_row + 1)
    return grids


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the state."""
    # --- Setup: validate everything before any work.
    validate_training_config(config)
    t = config.training
    devices = jax.local_device_count()
    global_devices = jax.device_count()
    data_lib.check_batch_size(t.batch_size_train, global_devices,
                              "config.training.batch_size_train")
    data_lib.check_batch_size(t.batch_size_eval, global_devices, "config.training.batch_size_eval")
    dataset = data_lib.load_dataset(config.data)
    model_config = model_config_from_dict(config.model.to_dict(), dataset.image_shape)
    _check_same_model(workdir, model_config)
    tx = make_optimizer(config.optimizer, t.num_steps_train)
    rng = jax.random.PRNGKey(t.seed)
    init_rng, train_rng, eval_rng, sample_rng = jax.random.split(rng, 4)

    # --- State: restore the latest checkpoint or start fresh.
    state = create_train_state(model_config, tx, init_rng)
    ckpt = Checkpointer(workdir, t.checkpoints_to_keep)
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        logging.info("Resumed from step %d in %s", int(state.step), ckpt.directory)
    if jax.process_index() == 0:
        save_run_config(workdir, config.to_dict(), model_config)
    writer = create_writer(workdir, jax.process_index())
    step = int(state.step)
    if step == 0:
        writer.write_hparams(config.to_dict())

    # --- Loop.
    substeps = resolve_substeps(t.substeps, (t.num_steps_train, t.steps_per_logging,
                                             t.steps_per_eval, t.steps_per_save))
    train_step = make_train_step(model_config, tx, config.optimizer.ema_rate,
                                 model_config.loss.beta,
                                 int(t.beta_warmup_fraction * t.num_steps_train),
                                 config.optimizer.ema_warmup_power)
    batches = data_lib.train_batches(
        dataset.train_images, batch_size=t.batch_size_train, num_local_devices=devices,
        substeps=substeps, seed=t.seed, start_step=step,
        process_index=jax.process_index(), process_count=jax.process_count())
    p_state, p_rng = replicate(state, devices), replicate(train_rng, devices)
    history, window_start, window_step = [], time.time(), step
    last_saved = step
    with StopSignals() as stop:
        while step < t.num_steps_train and stop.received is None:
            p_state, metrics = train_step(p_state, next(batches), p_rng)
            history += [(step + i + 1, jax.tree_util.tree_map(lambda m, i=i: m[:, i], metrics))
                        for i in range(substeps)]
            step += substeps
            done = step >= t.num_steps_train
            if step % t.steps_per_logging == 0 or done or step % t.steps_per_save == 0:
                history = _flush_history(history, writer, step, t, window_start, window_step)
                window_start, window_step = time.time(), step
            if step % t.steps_per_save == 0 or done:
                ckpt.save(step, _unreplicate(p_state))
                last_saved = step
            if step % t.steps_per_eval == 0 or done:
                _periodic_eval(p_state, dataset, model_config, config, writer, step,
                               eval_rng, sample_rng)
        if stop.received is not None and step != last_saved:
            _flush_history(history, writer, step, t, window_start, window_step)
            ckpt.save(step, _unreplicate(p_state))
            logging.warning("Signal %d: saved step %d and stopped.", stop.received, step)
    ckpt.close()
    writer.close()
    return _unreplicate(p_state)


def _flush_history(history, writer, step, t, window_start, window_step):
    """Fetches the metrics since the last flush, stops on non-finite values, logs them."""
    if not history:
        return []
    history = jax.device_get(history)
    bad = _first_non_finite(history)
    if bad is not None:
        raise FloatingPointError(
            f"non-finite loss or gradient at step {bad}: training stopped; the last good "
            f"checkpoint is kept.")
    scalars = {f"train/{k}": v for k, v in _mean_metrics(history).items()}
    elapsed = max(time.time() - window_start, 1e-9)
    steps_per_sec = (step - window_step) / elapsed
    scalars["train/steps_per_sec"] = steps_per_sec
    scalars["train/images_per_sec"] = steps_per_sec * t.batch_size_train
    writer.write_scalars(step, scalars)
    writer.flush()
    if jax.process_index() == 0:
        short = {k.split("/", 1)[1]: v for k, v in scalars.items()}
        print(format_progress(step, t.num_steps_train, short, steps_per_sec,
                              scalars["train/images_per_sec"]), flush=True)
    return []


def _periodic_eval(p_state, dataset, model_config, config, writer, step, eval_rng, sample_rng):
    """Test bound and sample grids on the EMA parameters."""
    scalars = evaluate_during_training(p_state.ema_params, dataset, model_config, config,
                                       jax.random.fold_in(eval_rng, step))
    writer.write_scalars(step, scalars)
    if jax.process_index() == 0:
        print(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in scalars.items()
                                                 if k in ("eval/bpd", "eval/kl_w_nats")),
              flush=True)
        ema = _unreplicate(p_state.ema_params)
        writer.write_images(step, sample_figures({"params": ema}, dataset, model_config, config,
                                                 jax.random.fold_in(sample_rng, step)))
    writer.flush()
