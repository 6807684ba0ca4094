"""The fast formulations compute the same numbers as the plain XLA ones, to float tolerance."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb, random_images, tiny_config

from vdm_vae.cpu import dropout, layers
from vdm_vae.cpu.attention import attention, resolve_impl
from vdm_vae.cpu.group_norm import GroupNorm
from vdm_vae.model.unet import ResnetBlock
from vdm_vae.model.vae import VDMVAE, init_params

KEY = jax.random.PRNGKey(7)
IMPLS = ("batched", "per_example")


def _qkv(dtype=jnp.float32, shape=(3, 20, 8)):
    keys = jax.random.split(KEY, 3)
    return tuple(jax.random.normal(k, shape).astype(dtype) for k in keys)


def _close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                   rtol=rtol, atol=atol)


@pytest.mark.parametrize("channels, groups, dtype", [(16, 8, None), (64, 32, None),
                                                     (32, 8, jnp.bfloat16)])
def test_group_norm_matches_flax_values_gradients_and_parameters(channels, groups, dtype):
    x = 3.0 * jax.random.normal(KEY, (2, 5, 7, channels)) + 1.5
    ours, flax_gn = GroupNorm(groups, dtype=dtype), nn.GroupNorm(groups, dtype=dtype)
    variables = flax_gn.init(KEY, x)
    assert (jax.tree_util.tree_map(jnp.shape, ours.init(KEY, x))
            == jax.tree_util.tree_map(jnp.shape, variables))
    variables = perturb(variables, seed=5)
    outs = [jax.jit(m.apply)(variables, x) for m in (ours, flax_gn)]
    assert outs[0].dtype == outs[1].dtype
    tol = 1e-2 if dtype == jnp.bfloat16 else 2e-5
    _close(outs[0], outs[1], rtol=tol, atol=tol)
    grads = [jax.jit(jax.grad(lambda v, x, m=m: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1)))(
        variables, x) for m in (ours, flax_gn)]
    _close(grads[0], grads[1], rtol=tol, atol=tol)


def test_auto_picks_per_example_on_cpu_and_rejects_unknown():
    assert resolve_impl("auto") == ("per_example" if jax.default_backend() == "cpu"
                                    else "batched")
    with pytest.raises(ValueError, match="per_example"):
        resolve_impl("flash")
    with pytest.raises(ValueError, match="attention_impl"):
        tiny_config(attention_impl="flash")


def test_attention_values_and_gradients_match_plain_softmax():
    q, k, v = _qkv()
    plain = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / np.sqrt(8), -1) @ v

    def loss(q, k, v, impl):
        return jnp.sum(jnp.sin(attention(q, k, v, impl)))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    grads = {i: grad(q, k, v, i) for i in IMPLS}
    for impl in IMPLS:
        _close(attention(q, k, v, impl), plain)
    _close(grads["per_example"], grads["batched"])


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_gradients_are_as_accurate_as_float32_allows(impl):
    """Against softmax attention in float64: both impls within float32 rounding."""
    q, k, v = (3.0 * x for x in _qkv(shape=(2, 40, 16)))

    def loss(q, k, v, attend):
        return jnp.sum(jnp.sin(attend(q, k, v)))

    with jax.enable_x64(True):
        exact = jax.grad(loss, argnums=(0, 1, 2))(
            *(np.asarray(x, np.float64) for x in (q, k, v)),
            lambda q, k, v: jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / 4.0, -1) @ v)
        exact = [np.asarray(g) for g in exact]
    ours = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, lambda q, k, v: attention(q, k, v, impl))
    for g, e in zip(ours, exact):
        assert g.dtype == jnp.float32
        assert np.max(np.abs(np.asarray(g, np.float64) - e)) < 1e-5 * np.max(np.abs(e))


def test_attention_keeps_bfloat16_values_in_bfloat16():
    q, k, v = _qkv(jnp.bfloat16)
    outs = [attention(q, k, v, impl) for impl in IMPLS]
    assert all(o.dtype == jnp.bfloat16 for o in outs)
    _close(outs[0], outs[1], rtol=2e-2, atol=2e-2)


def test_loss_and_gradients_of_the_model_do_not_depend_on_impl():
    """Covers the U-Net's and the encoder's attention and every GroupNorm in context."""
    configs = {i: tiny_config("conv", sm_n_layer=0, attention_impl=i) for i in IMPLS}
    variables = perturb(init_params(configs["batched"], KEY), seed=2)
    images = random_images(3, 4)

    def loss(params, config):
        out = VDMVAE(config).apply(params, images, rngs={"sample": KEY})
        return jnp.mean(out.total)

    results = {i: jax.jit(jax.value_and_grad(loss), static_argnums=1)(variables, c)
               for i, c in configs.items()}
    # float32 rounding differs between the two (see the float64 test above), and the network
    # amplifies it in a few gradient entries.
    _close(results["per_example"], results["batched"], rtol=5e-4, atol=2e-5)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_masks_drop_the_configured_rate_and_rescale_the_rest(rate):
    """The classic threefry stream of the U-Net's dropout gives Bernoulli(1 - rate) masks."""
    config = tiny_config(sm_pdrop=rate)
    block = ResnetBlock(config, 16)
    x = jax.random.normal(KEY, (32, 8, 8, 16))
    cond = jnp.zeros((32, 4))
    params = block.init(KEY, x, cond, True)
    _, state = block.apply(params, x, cond, False, rngs={"dropout": KEY},
                           capture_intermediates=True, mutable=["intermediates"])
    before = state["intermediates"]["GroupNorm_1"]["__call__"][0]
    after = np.asarray(state["intermediates"]["Dropout_0"]["__call__"][0])
    kept = after != 0
    assert abs(1 - kept.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / kept.size)
    np.testing.assert_allclose(after[kept], np.asarray(nn.swish(before))[kept] / (1 - rate),
                               rtol=1e-5)


@pytest.mark.parametrize("n", [1, 10, 11, 4097])
def test_unrolled_threefry_gives_the_bits_of_the_classic_stream(n):
    for key in (jax.random.PRNGKey(3), jax.random.key(11)):
        with jax.threefry_partitionable(False):
            expected = jax.random.bits(key, (n,), jnp.uint32)
        np.testing.assert_array_equal(jax.jit(dropout.classic_bits, static_argnums=1)(key, n),
                                      expected)


@pytest.mark.parametrize("p, shape", [(0.9, (4, 7, 7, 3)), (0.5, (5, 3)), (1 / 3, (33,)),
                                      (0.1, (2, 9, 9, 4)), (2**-24, (64,)), (1.0, (6,))])
def test_bernoulli_masks_equal_jax_classic_stream(p, shape):
    key = jax.random.fold_in(KEY, 5)
    with jax.threefry_partitionable(False):
        expected = jax.random.bernoulli(key, p, shape)
    mask = dropout.bernoulli(key, p, shape)
    assert mask.shape == shape and mask.dtype == jnp.bool_
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_dropout_equals_flax_dropout_of_the_classic_stream(rate):
    x = jax.random.normal(KEY, (3, 6, 6, 8))
    ours, flax_dropout = dropout.Dropout(rate), nn.Dropout(rate)
    rngs = {"dropout": jax.random.PRNGKey(9)}
    with jax.threefry_partitionable(False):
        expected = flax_dropout.apply({}, x, deterministic=False, rngs=rngs)
    got = jax.jit(lambda x: ours.apply({}, x, False, rngs=rngs))(x)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ours.apply({}, x, True), x)


@pytest.mark.parametrize("shape, dtype", [((2, 5, 5, 12), None), ((3, 7, 12), None),
                                          ((4, 12), jnp.bfloat16)])
def test_dense_matches_flax_dense_values_gradients_and_parameters(shape, dtype):
    x = jax.random.normal(KEY, shape)
    ours, flax_dense = layers.Dense(6, dtype=dtype), nn.Dense(6, dtype=dtype)
    variables = perturb(flax_dense.init(KEY, x), seed=3)
    assert (jax.tree_util.tree_map(jnp.shape, ours.init(KEY, x))
            == jax.tree_util.tree_map(jnp.shape, variables))
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-5
    outs = [jax.jit(m.apply)(variables, x) for m in (ours, flax_dense)]
    assert outs[0].dtype == outs[1].dtype
    _close(outs[0], outs[1], rtol=tol, atol=tol)
    grads = [jax.jit(jax.grad(lambda v, x, m=m: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1)))(
        variables, x) for m in (ours, flax_dense)]
    _close(grads[0], grads[1], rtol=tol, atol=tol)


def _value_and_grads(fn, variables, *inputs):
    """fn(variables, *inputs) and the gradient of sum(sin(fn)) in the variables and inputs."""
    def loss(v, *xs):
        return jnp.sum(jnp.sin(jnp.concatenate(
            [o.reshape(-1) for o in jax.tree_util.tree_leaves(fn(v, *xs))])))

    return jax.jit(fn)(variables, *inputs), jax.jit(jax.grad(loss, argnums=tuple(
        range(len(inputs) + 1))))(variables, *inputs)


@pytest.mark.parametrize("split, groups", [((8, 16), 6), ((4, 4, 16), 12), ((10, 14), 6)])
def test_group_norm_of_parts_equals_group_norm_of_their_concatenation(split, groups):
    """(10, 14) with 6 groups of 4 channels has a group across the parts."""
    keys = jax.random.split(KEY, len(split))
    parts = [2.0 * jax.random.normal(k, (2, 5, 5, c)) + 1.0 for k, c in zip(keys, split)]
    whole = jnp.concatenate(parts, axis=-1)
    gn = GroupNorm(groups)
    variables = perturb(gn.init(KEY, whole), seed=2)
    assert jax.tree_util.tree_map(jnp.shape, gn.init(KEY, parts)) == jax.tree_util.tree_map(
        jnp.shape, variables)
    out_parts, grads_parts = _value_and_grads(lambda v, *ps: gn.apply(v, list(ps)), variables,
                                              *parts)
    out_whole, grads_whole = _value_and_grads(gn.apply, variables, whole)
    _close(jnp.concatenate(out_parts, axis=-1), out_whole)
    _close(grads_parts[0], grads_whole[0])
    _close(jnp.concatenate(grads_parts[1:], axis=-1), grads_whole[1])


@pytest.mark.parametrize("split", [(12,), (8, 4)])
def test_conv3x3_and_dense_of_parts_equal_flax_layers_on_the_concatenation(split):
    keys = jax.random.split(KEY, len(split))
    parts = [jax.random.normal(k, (2, 6, 6, c)) for k, c in zip(keys, split)]
    whole = jnp.concatenate(parts, axis=-1)
    for ours, theirs in ((layers.Conv3x3(5), nn.Conv(5, (3, 3))),
                         (layers.Dense(5), nn.Dense(5))):
        variables = perturb(theirs.init(KEY, whole), seed=4)
        assert (jax.tree_util.tree_map(jnp.shape, ours.init(KEY, parts))
                == jax.tree_util.tree_map(jnp.shape, variables))
        out_parts, grads_parts = _value_and_grads(
            lambda v, *ps, layer=ours: layer.apply(v, list(ps)), variables, *parts)
        out_whole, grads_whole = _value_and_grads(theirs.apply, variables, whole)
        _close(out_parts, out_whole)
        _close(grads_parts[0], grads_whole[0], rtol=1e-4, atol=1e-5)
        _close(jnp.concatenate(grads_parts[1:], axis=-1), grads_whole[1])


def test_up_block_on_h_and_skip_equals_the_block_on_their_concatenation():
    config = tiny_config(sm_pdrop=0.3)
    h, skip = (jax.random.normal(k, (4, 6, 6, 16)) for k in jax.random.split(KEY))
    cond = jax.random.normal(KEY, (4, 5))
    block = ResnetBlock(config, 16)
    variables = perturb(block.init(KEY, jnp.concatenate([h, skip], -1), cond, True), seed=6)
    rngs = {"dropout": jax.random.PRNGKey(2)}

    def apply(v, *xs):  # xs: (h, skip, cond) or (concatenation, cond)
        return block.apply(v, xs[:-1] if len(xs) > 2 else xs[0], xs[-1], False, rngs=rngs)

    out_parts, grads_parts = _value_and_grads(apply, variables, h, skip, cond)
    out_whole, grads_whole = _value_and_grads(apply, variables, jnp.concatenate([h, skip], -1),
                                              cond)
    _close(out_parts, out_whole, rtol=1e-5, atol=1e-5)
    _close(grads_parts[0], grads_whole[0], rtol=1e-4, atol=1e-4)
    _close(jnp.concatenate(grads_parts[1:3], axis=-1), grads_whole[1], rtol=1e-4, atol=1e-5)
    _close(grads_parts[3], grads_whole[2], rtol=1e-4, atol=1e-5)
