"""Pure pieces of the train step: EMA warm-up, the weight-decay mask, the KL warm-up, the logged
MMD."""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_vae.model.config import EncoderConfig, LossConfig, ModelConfig
from vdm_vae.model.objective import beta_at
from vdm_vae.model.vae import init_params
from vdm_vae.training.step import AXIS, decay_mask, ema_decay, loss_and_metrics


def test_ema_decay_warms_up_to_the_rate_and_is_fixed_without_warmup():
    steps = jnp.asarray([0, 1, 10, 100, 1000, 10**5, 10**7])
    warm = np.asarray(jax.vmap(lambda s: ema_decay(s, 0.9999, 0.75))(steps))
    assert warm[0] == 0.0 and np.all(np.diff(warm) >= 0) and warm[-1] == np.float32(0.9999)
    assert 0.98 < warm[3 + 1] < 0.999  # after 1000 steps it averages over about 180 steps
    fixed = np.asarray(jax.vmap(lambda s: ema_decay(s, 0.9999, 0.0))(steps))
    np.testing.assert_allclose(fixed, 0.9999)


def test_decay_mask_skips_biases_norm_scales_and_the_schedule():
    config = ModelConfig(image_shape=(8, 8, 1), sm_n_layer=1, sm_n_embd=8, sm_norm_groups=4,
                         gamma_type="learnable_scalar", encoder=EncoderConfig("conv", 8, 1, 4, 2))
    params = jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))["params"]
    flat = jax.tree_util.tree_flatten_with_path(decay_mask(params, ("bias", "scale"), ("gamma",)))
    decayed = {"/".join(k.key for k in path): v for path, v in flat[0]}
    assert decayed["score_model/conv_in/kernel"] and decayed["encoder/dense/kernel"]
    assert not decayed["score_model/conv_in/bias"]
    assert not decayed["score_model/GroupNorm_0/scale"]
    assert not decayed["gamma/w"] and not decayed["gamma/b"]
    original = jax.tree_util.tree_flatten_with_path(decay_mask(params, ("bias",), ()))
    as_original = {"/".join(k.key for k in path): v for path, v in original[0]}
    assert as_original["score_model/GroupNorm_0/scale"] and as_original["gamma/w"]


def test_beta_warmup_is_linear_then_flat():
    values = [float(beta_at(jnp.asarray(s), 2.0, 100)) for s in (0, 50, 100, 1000)]
    assert values == [0.0, 1.0, 2.0, 2.0]
    assert float(beta_at(jnp.asarray(0), 2.0, 0)) == 2.0


def test_the_step_reports_the_mmd_it_weighs_and_only_then():
    config = ModelConfig(image_shape=(8, 8, 1), sm_n_layer=1, sm_n_embd=8, sm_norm_groups=4,
                         encoder=EncoderConfig("conv", 8, 1, 4, 2))
    params = init_params(config, jax.random.PRNGKey(0))["params"]
    images = jax.random.uniform(jax.random.PRNGKey(1), (1, 4, 8, 8, 1), minval=-1, maxval=1)

    def run(loss):
        cfg = dataclasses.replace(config, loss=loss)
        step = jax.vmap(partial(loss_and_metrics, config=cfg, beta=jnp.float32(1.0),
                                train=True),
                        in_axes=(None, 0, None), axis_name=AXIS)
        return jax.tree.map(lambda v: float(v[0]), step(params, images, jax.random.PRNGKey(2)))

    plain, weighted = run(LossConfig()), run(LossConfig(mmd_weight=2.5))
    assert "mmd_w" not in plain[1] and weighted[1]["mmd_w"] > 0
    assert weighted[0] == pytest.approx(plain[0] + 2.5 * weighted[1]["mmd_w"], rel=1e-5)
    assert weighted[1]["bpd"] == plain[1]["bpd"]
