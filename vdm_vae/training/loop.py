"""The training loop: validate, restore or init, train with periodic log / eval / save.

One process trains a workdir at a time (its lock, `vdm_vae.runtime.locks`). A run is finished
once its last step is saved and evaluated: then it writes workdir/finished.json
(`vdm_vae.training.finished`), removed as soon as the run trains on. A run stopped by SIGINT /
SIGTERM saves a checkpoint and raises `Stopped` (main.py exits with 128 + the signal number).
With training.stop_at_step = S > 0 the run saves and returns at step S of its schedule,
unfinished: running it again with a later S (or 0) continues it. A checkpoint past the config's
steps is refused, unless `finish_at_checkpoint`.
"""

import time
from typing import Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vdm_vae import data as data_lib
from vdm_vae.cpu.platforms import local_train_devices, resolve_substeps
from vdm_vae.model.config import ModelConfig, model_config_from_dict, model_config_to_dict
from vdm_vae.runtime import signals
from vdm_vae.runtime.console import say
from vdm_vae.runtime.images import image_grid
from vdm_vae.runtime.locks import hold_run
from vdm_vae.runtime.progress import StepTimer
from vdm_vae.runtime.signals import Stopped
from vdm_vae.sampling import draw_prior_w, encode, sample
from vdm_vae.training import curves, finished
from vdm_vae.training.checkpoints import (
    Checkpointer,
    data_fingerprint,
    load_run_config,
    save_run_config,
)
from vdm_vae.training.prefetch import prefetch_to_devices
from vdm_vae.training.step import (
    TrainState,
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    replicate,
)
from vdm_vae.training.writers import (
    create_writer,
    drop_rows_after,
    format_progress,
    read_metrics,
)


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
    _require(t.checkpoints_keep_period >= 0 and t.checkpoints_keep_period % t.steps_per_save == 0,
             "training.checkpoints_keep_period", t.checkpoints_keep_period,
             f"0 (off) or a multiple of training.steps_per_save={t.steps_per_save}")
    _require(0 <= t.stop_at_step <= t.num_steps_train, "training.stop_at_step", t.stop_at_step,
             f"0 (off) or a step <= training.num_steps_train={t.num_steps_train}")
    for name in ("tensorboard", "async_checkpoints"):
        _require(isinstance(t[name], bool), f"training.{name}", t[name], "True or False")
    _require(t.prefetch_batches >= 0, "training.prefetch_batches", t.prefetch_batches,
             "an int >= 0 (0: off)")
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


def check_data_size(dataset: data_lib.Dataset, t: ml_collections.ConfigDict):
    """Each split holds at least one batch (the periodic evaluation needs a whole one)."""
    for split, images, field in (("training", dataset.train_images, "batch_size_train"),
                                 ("test", dataset.test_images, "batch_size_eval")):
        if len(images) < getattr(t, field):
            raise ValueError(f"the data set {dataset.name!r} has {len(images)} {split} images, "
                             f"fewer than one batch (config.training.{field}="
                             f"{getattr(t, field)}): give it more images, or use a smaller "
                             "batch.")


class StopSignals(signals.Interrupts):
    """Turns SIGINT / SIGTERM into a flag the loop checks, so it can save and exit.

    With several processes the loop checks `agreed(step)`, so a signal to any process stops
    all at the same step.
    """

    def __init__(self, check_every: int = 1):
        super().__init__(raising=False)
        self.check_every = check_every

    def agreed(self, step: int) -> Optional[int]:
        """The signal any process received (so that all stop and save the same step). With
        several processes they agree at the multiples of check_every only: each agreement
        waits for every process, so the devices would idle if it came at every step."""
        if jax.process_count() == 1:
            return self.received
        if step % self.check_every:
            return None
        from jax.experimental import multihost_utils

        signums = multihost_utils.process_allgather(np.int32(self.received or 0))
        return int(np.max(signums)) or None


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
    devices = jax.tree_util.tree_leaves(params)[0].shape[0]  # params are replicated on them
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
        rngs = replicate(jax.random.fold_in(rng, i), devices)  # one key: split-invariant noise
        rows.append(_unreplicate(eval_step(params, images, rngs)))
    return {f"eval/{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}


def sample_figures(params, dataset, model_config: ModelConfig, config, rng) -> dict:
    """PNG grids: samples with w from the prior, and guided generations (if conditional)."""
    n, steps = config.training.eval_num_samples, config.training.eval_sample_steps
    rng_w, rng_s, rng_g = jax.random.split(rng, 3)
    w = draw_prior_w(params, model_config, n, rng_w) if model_config.conditional else None
    images = sample(params, w, config=model_config, rng=rng_s, num_steps=steps, num_samples=n)
    grids = {"samples": image_grid(np.asarray(images), int(np.ceil(np.sqrt(n))))}
    if model_config.conditional and model_config.encoder.single_code:
        rows, per_row = min(8, len(dataset.test_images)), 7
        guide = dataset.test_images[:rows]
        mean, _ = encode(params, guide, config=model_config)
        out = sample(params, jnp.repeat(mean, per_row, axis=0), config=model_config,
                     rng=rng_g, num_steps=steps)
        out = np.asarray(out).reshape((rows, per_row) + guide.shape[1:])
        tiles = np.concatenate([guide[:, None], out], axis=1).reshape((-1,) + guide.shape[1:])
        grids["guided"] = image_grid(tiles, per_row + 1)
    return grids


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       finish_at_checkpoint: bool = False) -> TrainState:
    """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the state.

    SIGINT / SIGTERM are caught from the start, so a signal during the setup (loading the data,
    building or restoring the state) stops the run before its first step instead of being lost.
    The config and the data are checked before the workdir is touched; then the workdir's lock
    is held to the end (another writer: `WorkdirBusy`, one line).

    Args:
      finish_at_checkpoint: a newest checkpoint past training.num_steps_train is evaluated and
        marked finished at its step (else such a run is refused with a ValueError).
    """
    with StopSignals(config.training.steps_per_logging) as stop:
        validate_training_config(config)
        t = config.training
        devices = local_train_devices((t.batch_size_train, t.batch_size_eval),
                                      config.model.get("sm_n_embd", ModelConfig.sm_n_embd))
        global_devices = devices * jax.process_count()
        data_lib.check_batch_size(t.batch_size_train, global_devices,
                                  "config.training.batch_size_train")
        data_lib.check_batch_size(t.batch_size_eval, global_devices,
                                  "config.training.batch_size_eval")
        dataset = data_lib.load_dataset(config.data)
        check_data_size(dataset, t)
        model_config = model_config_from_dict(config.model.to_dict(), dataset.image_shape)
        with hold_run(workdir, "training"):
            return _train(config, workdir, dataset, model_config, devices, stop,
                          finish_at_checkpoint)


def _train(config: ml_collections.ConfigDict, workdir: str, dataset: data_lib.Dataset,
           model_config: ModelConfig, devices: int, stop: StopSignals,
           finish_at_checkpoint: bool) -> TrainState:
    # --- Setup: the model, the optimizer, the checkpoints (a file in their place is refused).
    t = config.training
    _check_same_model(workdir, model_config)
    tx = make_optimizer(config.optimizer, t.num_steps_train)
    rng = jax.random.PRNGKey(t.seed)
    init_rng, train_rng, _, sample_rng = jax.random.split(rng, 4)
    ckpt = Checkpointer(workdir, t.checkpoints_to_keep, t.checkpoints_keep_period)

    # --- State: restore the latest checkpoint or start fresh; where this call ends.
    state = create_train_state(model_config, tx, init_rng)
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        say(f"Resumed from step {int(state.step)} in {ckpt.directory}")
    step = int(state.step)
    last_step = finished.end_step(t, step, finish_at_checkpoint, ckpt.directory)
    if step >= last_step and finished.finished_step(workdir) == step:
        say(f"Finished already at step {step} (finished.json): nothing to do.")
        ckpt.close()
        return state
    finished.unmark(workdir, step, last_step)
    if jax.process_index() == 0:
        save_run_config(workdir, config.to_dict(), model_config, data_fingerprint(dataset))
        drop_rows_after(workdir, step)  # rows of steps that are trained again
    writer = create_writer(workdir, jax.process_index(), config.training.tensorboard)
    if step == 0:
        writer.write_hparams(config.to_dict())
    cpu = CpuClock(cpu_seconds_before(workdir, step))

    # --- Loop.
    substeps = resolve_substeps(t.substeps, (t.num_steps_train, t.steps_per_logging,
                                             t.steps_per_eval, t.steps_per_save, last_step))
    train_step = make_train_step(model_config, tx, config.optimizer.ema_rate,
                                 model_config.loss.beta,
                                 int(t.beta_warmup_fraction * t.num_steps_train),
                                 config.optimizer.ema_warmup_power)
    batches = prefetch_to_devices(data_lib.train_batches(
        dataset.train_images, batch_size=t.batch_size_train, num_local_devices=devices,
        substeps=substeps, seed=t.seed, start_step=step,
        process_index=jax.process_index(), process_count=jax.process_count()),
        devices, t.prefetch_batches)
    p_state, p_rng = replicate(state, devices), replicate(train_rng, devices)
    history, timer = [], StepTimer()  # history: (first step, metrics [D, S]) of each call
    last_saved, start_step = ckpt.restored_step, step
    received, final_eval = None, None
    # Nothing in the loop waits for the devices between logging steps: the metrics stay on
    # them until `_flush_history` fetches them all at once.
    try:
        while step < last_step and (received := stop.agreed(step)) is None:
            p_state, metrics = train_step(p_state, next(batches), p_rng)
            history.append((step + 1, metrics))
            step += substeps
            if not timer.running:  # the first step compiles: time from its end on
                jax.block_until_ready(p_state)
                timer.start(step)
            done = step >= last_step
            if step % t.steps_per_logging == 0 or done or step % t.steps_per_save == 0:
                history = _flush_history(history, writer, step, t, timer, last_saved, ckpt,
                                         cpu)
            if step % t.steps_per_save == 0 or done:
                _save(ckpt, writer, step, p_state, wait=not t.async_checkpoints)
                last_saved = step
                timer.restart(step)  # saving is not a training step
            if step % t.steps_per_eval == 0 or done:
                scalars = _periodic_eval(p_state, dataset, model_config, config, writer, step,
                                         sample_rng, cpu)
                final_eval = scalars if done else None
                timer.restart(step)
    except BaseException:  # a save in the background ends before the error ends the run
        ckpt.wait_quietly()
        raise

    # --- End: stopped by a signal, paused at stop_at_step, or finished once evaluated.
    if received is not None:
        if step in (start_step, last_saved):  # e.g. a signal during the setup
            say(f"Signal {received}: stopped at step {step}, nothing new to save.")
        else:
            _flush_history(history, writer, step, t, timer, last_saved, ckpt, cpu)
            _save(ckpt, writer, step, p_state, wait=True)
            say(f"Signal {received}: saved step {step} and stopped.")
    elif step < t.num_steps_train:
        say(f"Stopped at step {step} of {t.num_steps_train} (training.stop_at_step); run again "
            "with a later stop_at_step, or 0, to continue.")
    else:
        if final_eval is None:  # saved at its last step by an earlier call, never evaluated
            say(f"Evaluating step {step}, the last, before marking the run finished.")
            final_eval = _periodic_eval(p_state, dataset, model_config, config, writer, step,
                                        sample_rng, cpu)
        ckpt.wait()  # the last checkpoint is on disk before the run is marked finished
        finished.mark(workdir, step, final_eval)
    ckpt.close()
    writer.close()
    if received is not None:
        raise Stopped(received, step)
    return _unreplicate(p_state)


class CpuClock:
    """CPU seconds of the run (all threads), carried over from earlier processes."""

    def __init__(self, before: float):
        self.before, self.start = before, time.process_time()

    def seconds(self) -> float:
        return self.before + time.process_time() - self.start


def cpu_seconds_before(workdir: str, step: int) -> float:
    """The run's CPU seconds at `step` by its metrics.jsonl (0 for a new run)."""
    if step == 0:
        return 0.0
    return max((row["train/cpu_seconds"] for row in read_metrics(workdir)
                if row.get("step", step + 1) <= step and "train/cpu_seconds" in row),
               default=0.0)


def _last_step(t) -> int:
    """The step this call of train() ends at: training.stop_at_step, else num_steps_train."""
    return t.stop_at_step or t.num_steps_train


def _save(ckpt: Checkpointer, writer, step: int, p_state, wait: bool):
    """Saves step's state; writes how long the loop waited for it (checkpoint/seconds)."""
    start = time.perf_counter()
    ckpt.save(step, _unreplicate(p_state), wait=wait)
    writer.write_scalars(step, {"checkpoint/seconds": time.perf_counter() - start})


def _per_step(history) -> list:
    """[(step, metrics of that step [D])] from [(first step, metrics [D, S])] on the host."""
    return [(first + i, {k: v[:, i] for k, v in metrics.items()})
            for first, metrics in history
            for i in range(next(iter(metrics.values())).shape[1])]


def _flush_history(history, writer, step, t, timer, last_saved, ckpt, cpu):
    """Fetches the metrics since the last flush, stops on non-finite values, logs them."""
    if not history:
        return []
    history = _per_step(jax.device_get(history))
    bad = _first_non_finite(history)
    if bad is not None:
        kept = (f"the last good checkpoint is step {last_saved} in {ckpt.directory}"
                if last_saved is not None else "no checkpoint was saved before it")
        raise FloatingPointError(
            f"non-finite loss or gradient at step {bad}: training stopped; {kept}. "
            "Lower config.optimizer.learning_rate or check the data.")
    scalars = {f"train/{k}": v for k, v in _mean_metrics(history).items()}
    steps_per_sec = timer.steps_per_sec(step)
    if steps_per_sec is not None:
        scalars["train/steps_per_sec"] = steps_per_sec
        scalars["train/images_per_sec"] = steps_per_sec * t.batch_size_train
    scalars["train/cpu_seconds"] = cpu.seconds()
    writer.write_scalars(step, scalars)
    writer.flush()
    short = {k.split("/", 1)[1]: v for k, v in scalars.items()}
    say(format_progress(step, _last_step(t), short, steps_per_sec,
                        t.batch_size_train))
    return []


def _periodic_eval(p_state, dataset, model_config, config, writer, step, sample_rng,
                   cpu) -> dict:
    """Learning-curve point on the EMA parameters: the test bound and its terms on fixed
    images with fixed draws, the encoder's KL, active units and linear probe, sample grids.
    Its cost, bounded by the config (training.num_eval_batches, curve_probe_train /
    curve_probe_test, eval_num_samples x eval_sample_steps), is written as eval/seconds and
    its parts. Returns the scalars written ({"eval/bpd": ...})."""
    t = config.training
    jax.block_until_ready(p_state.ema_params)  # the train steps queued before it are not its cost
    clock = {"start": time.perf_counter()}
    scalars = evaluate_during_training(p_state.ema_params, dataset, model_config, config,
                                       curves.fixed_eval_key(t.seed))
    clock["bound"] = time.perf_counter()
    ema = _unreplicate(p_state.ema_params)
    if curves.has_encoder_metrics(model_config, dataset) and t.curve_probe_train > 0:
        enc = curves.encoder_metrics({"params": ema}, dataset, model_config,
                                     t.curve_probe_train, t.curve_probe_test, t.batch_size_eval)
        scalars.update({f"eval/{k}": v for k, v in enc.items()})
    clock["probe"] = time.perf_counter()
    if jax.process_index() == 0:
        writer.write_images(step, sample_figures({"params": ema}, dataset, model_config, config,
                                                 jax.random.fold_in(sample_rng, step)))
    clock["figures"] = time.perf_counter()
    scalars["eval/cpu_seconds"] = cpu.seconds()
    scalars["eval/seconds"] = clock["figures"] - clock["start"]
    for part, before in (("bound", "start"), ("probe", "bound"), ("figures", "probe")):
        scalars[f"eval/seconds_{part}"] = clock[part] - clock[before]
    writer.write_scalars(step, scalars)
    shown = ("eval/bpd", "eval/kl_w_nats", "eval/active_units", "eval/probe_linear_acc")
    say(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in scalars.items()
                                          if k in shown)
        + f"  ({scalars['eval/seconds']:.1f} s: bound {scalars['eval/seconds_bound']:.1f}, "
        f"probe {scalars['eval/seconds_probe']:.1f}, figures "
        f"{scalars['eval/seconds_figures']:.1f})")
    writer.flush()
    return scalars
