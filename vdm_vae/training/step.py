"""Train state, optimizer and the pmapped train/eval steps (pure functions)."""

import functools
from typing import Any, Callable, Dict, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vdm_vae.model import objective
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.diffusion import sample_times
from vdm_vae.model.vae import VDMVAE, init_params

AXIS = "batch"


class TrainState(flax.struct.PyTreeNode):
    """Everything a checkpoint holds."""

    step: jax.Array  # [] int32, optimiser steps done
    params: Any
    ema_params: Any
    opt_state: Any


def replicate(tree, devices: int):
    """Adds a leading device axis [devices, ...] for the pmapped steps.

    In a single process the copies are placed as the step's outputs are (sharded over the
    local devices on AXIS), so that feeding a step's output back does not compile it a
    second time, as host arrays on the first call would.
    """
    tree = jax.tree_util.tree_map(
        lambda x: np.broadcast_to(np.asarray(x), (devices,) + np.shape(x)), tree)
    if jax.process_count() > 1:
        return tree
    mesh = Mesh(np.array(jax.local_devices()[:devices]), (AXIS,))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def decay_mask(params, no_decay_leaves: Sequence[str], no_decay_modules: Sequence[str]):
    """True where weight decay applies: not a leaf named in no_decay_leaves (e.g. bias,
    GroupNorm scale) and not under a top-level module in no_decay_modules (e.g. gamma)."""
    flat = flax.traverse_util.flatten_dict(params)
    mask = {path: path[-1] not in no_decay_leaves and path[0] not in no_decay_modules
            for path in flat}
    return flax.traverse_util.unflatten_dict(mask)


def learning_rate_schedule(opt, num_steps: int) -> optax.Schedule:
    """Linear warm-up to opt.learning_rate, then constant or linear decay to 0."""
    warmup = optax.linear_schedule(0.0, opt.learning_rate, max(opt.lr_warmup_steps, 1))
    if not opt.lr_decay:
        return warmup
    decay = optax.linear_schedule(opt.learning_rate, 0.0,
                                  max(num_steps - opt.lr_warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [opt.lr_warmup_steps])


def make_optimizer(opt, num_steps: int) -> optax.GradientTransformation:
    """AdamW with the explicit decay mask, optional global-norm clipping first."""
    if opt.name != "adamw":
        raise ValueError(f"config.optimizer.name={opt.name!r} is unknown: expected 'adamw'.")
    mask = functools.partial(decay_mask, no_decay_leaves=tuple(opt.no_decay_leaves),
                             no_decay_modules=tuple(opt.no_decay_modules))
    adamw = optax.adamw(learning_rate_schedule(opt, num_steps), b1=opt.b1, b2=opt.b2,
                        eps=opt.eps, weight_decay=opt.weight_decay, mask=mask)
    if opt.gradient_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(opt.gradient_clip_norm), adamw)
    return adamw


def create_train_state(model_config: ModelConfig, tx: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
    """Fresh state at step 0 with EMA params equal to the params."""
    params = init_params(model_config, rng)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
                      opt_state=jax.jit(tx.init)(params))


def _example_ids(batch: int) -> Tuple[jax.Array, jax.Array]:
    """Global indices [b] of this device's examples and the global batch size."""
    dev = jax.lax.axis_index(AXIS)
    ndev = jax.lax.psum(1, AXIS)
    return dev * batch + jnp.arange(batch), batch * ndev


def loss_and_metrics(params, images: jax.Array, rng: jax.Array, *, config: ModelConfig,
                     beta: jax.Array, train: bool) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Objective (bits/dim) and batch-mean metrics for this device's images [b,H,W,C].

    Noise is drawn per global example and times are antithetic over the global batch, so
    the result does not depend on how the batch is split over devices (dropout aside).
    """
    ids, global_batch = _example_ids(images.shape[0])
    t = sample_times(jax.random.fold_in(rng, 0), global_batch, config.antithetic_time_sampling)
    rngs = {"sample": jax.random.fold_in(rng, 1),
            "dropout": jax.random.fold_in(jax.random.fold_in(rng, 2), jax.lax.axis_index(AXIS))}
    out = VDMVAE(config).apply({"params": params}, images, deterministic=not train,
                               t=t[ids], example_ids=ids, rngs=rngs)
    value = objective.training_objective(out, config.loss, config.image_shape, beta)
    metrics = {k: jnp.mean(v) for k, v in objective.bpd_terms(out, config.image_shape).items()}
    metrics.update(objective=value, kl_w_nats=jnp.mean(out.kl_w), gamma_0=out.gamma_0,
                   gamma_1=out.gamma_1)
    if config.loss.mmd_weight > 0:
        metrics["mmd_w"] = out.mmd_w
    return value, metrics


def ema_decay(step: jax.Array, ema_rate: float, warmup_power: float) -> jax.Array:
    """EMA decay at `step`: ema_rate, or min(ema_rate, 1 - (1 + step)^-power) with warm-up.

    The warm-up (as the study's ema_pytorch, power 0.75) lets short runs average over the
    recent past instead of staying near the initial parameters; power 0 gives a fixed rate.
    """
    if warmup_power <= 0:
        return jnp.asarray(ema_rate, jnp.float32)
    warm = 1.0 - (1.0 + step.astype(jnp.float32)) ** (-warmup_power)
    return jnp.minimum(ema_rate, warm)


def make_train_step(config: ModelConfig, tx: optax.GradientTransformation, ema_rate: float,
                    beta: float, beta_warmup_steps: int, ema_warmup_power: float = 0.0
                    ) -> Callable:
    """pmapped (state, images [D,S,b,H,W,C], rng) -> (state, metrics); S steps per call.

    S = 1 runs the plain step (no scan): on XLA:CPU convolution weight gradients are much
    slower inside a scan body.
    """

    def one_step(state: TrainState, images: jax.Array, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        beta_now = objective.beta_at(state.step, beta, beta_warmup_steps)
        grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)
        (_, metrics), grads = grad_fn(state.params, images, rng, config=config, beta=beta_now,
                                      train=True)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(state.step, ema_rate, ema_warmup_power)
        ema = jax.tree_util.tree_map(lambda e, p: e + (1.0 - decay) * (p - e),
                                     state.ema_params, params)
        metrics = jax.lax.pmean(metrics, AXIS)
        metrics.update(grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(params),
                       beta=beta_now)
        metrics["finite"] = jnp.isfinite(metrics["objective"]) & jnp.isfinite(
            metrics["grad_norm"])
        new_state = TrainState(step=state.step + 1, params=params, ema_params=ema,
                               opt_state=opt_state)
        return new_state, metrics

    def steps(state: TrainState, images: jax.Array, rng: jax.Array):
        if images.shape[0] == 1:
            state, metrics = one_step(state, images[0], rng)
            return state, jax.tree_util.tree_map(lambda m: m[None], metrics)
        return jax.lax.scan(lambda s, x: one_step(s, x, rng), state, images)

    return jax.pmap(steps, axis_name=AXIS, donate_argnums=(0,))


def make_eval_step(config: ModelConfig) -> Callable:
    """pmapped (params, images [D,b,H,W,C], rng) -> batch-mean metrics, no dropout."""

    def step(params, images, rng):
        _, metrics = loss_and_metrics(params, images, rng, config=config,
                                      beta=jnp.asarray(config.loss.beta), train=False)
        return jax.lax.pmean(metrics, AXIS)

    return jax.pmap(step, axis_name=AXIS)
