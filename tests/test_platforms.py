"""Each automatic choice of vdm_vae/cpu/platforms.py, on CPU and (patched) elsewhere, and
bfloat16."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb, random_images, tiny_config

from vdm_vae.cpu import dropout, layers, platforms
from vdm_vae.cpu import env as cpu_env
from vdm_vae.cpu.attention import resolve_impl
from vdm_vae.cpu.group_norm import GroupNorm
from vdm_vae.model.vae import init_params
from vdm_vae.training.step import (
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    replicate,
)

KEY = jax.random.PRNGKey(4)


@pytest.fixture()
def gpu(monkeypatch):
    """Makes the platform choices take their off-CPU branch (the arrays stay on the CPU)."""
    monkeypatch.setattr(platforms, "backend", lambda: "gpu")


def _close(a, b, rtol=2e-5, atol=2e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_cpu_branch_is_taken_on_this_machine():
    assert platforms.backend() == jax.default_backend() == "cpu"
    assert platforms.cpu_formulations()


def test_substeps_default_is_one_on_cpu_and_a_divisor_of_the_intervals_elsewhere(monkeypatch):
    assert platforms.resolve_substeps(0, (100, 1000)) == 1
    assert platforms.resolve_substeps(3, (100,)) == 3
    with pytest.raises(ValueError, match="substeps"):
        platforms.resolve_substeps(-1)
    monkeypatch.setattr(platforms, "backend", lambda: "gpu")
    assert platforms.resolve_substeps(0, (100, 1000, 5000)) == platforms.ACCELERATOR_SUBSTEPS
    assert platforms.resolve_substeps(0, (100, 2)) == 2
    assert platforms.resolve_substeps(0, (100, 3)) == 1
    assert platforms.resolve_substeps(5, (100,)) == 5


def test_attention_auto_is_per_example_on_cpu_and_batched_elsewhere(monkeypatch):
    assert resolve_impl("auto") == "per_example"
    monkeypatch.setattr(platforms, "backend", lambda: "tpu")
    assert resolve_impl("auto") == "batched"
    assert resolve_impl("per_example") == "per_example"


@pytest.mark.parametrize("env, devices, modules, expected", [
    ({"JAX_PLATFORMS": "cpu"}, ["/dev/nvidiactl"], ["jax_cuda13_plugin"], True),
    ({"JAX_PLATFORMS": "cuda,cpu"}, [], [], False),
    ({}, ["/dev/nvidiactl"], ["jax_cuda13_plugin"], False),
    ({}, ["/dev/nvidiactl"], ["numpy"], True),  # a GPU but CPU-only jax
    ({}, [], ["jax_cuda12_plugin"], True),  # the plugin but no GPU
    ({}, ["/dev/accel0"], ["libtpu"], False),
])
def test_computes_on_cpu_from_the_environment_device_files_and_plugins(
        monkeypatch, env, devices, modules, expected):
    monkeypatch.setattr(cpu_env.glob, "glob", lambda f: [f] if f in devices else [])
    monkeypatch.setattr(cpu_env.pkgutil, "iter_modules",
                        lambda: [type("M", (), {"name": m}) for m in modules])
    assert cpu_env.computes_on_cpu(env) is expected


@pytest.mark.parametrize("on_cpu", [True, False])
def test_reexec_with_cpu_settings_only_where_jax_computes_on_cpu(monkeypatch, on_cpu):
    calls = []
    monkeypatch.setattr(cpu_env, "computes_on_cpu", lambda env: on_cpu)
    monkeypatch.setattr(cpu_env.os, "execve", lambda exe, argv, env: calls.append(env))
    for name in ("GLIBC_TUNABLES", "XLA_FLAGS", cpu_env.REEXEC_ENV):
        monkeypatch.delenv(name, raising=False)
    cpu_env.reexec_with_cpu_settings()
    if on_cpu:
        assert len(calls) == 1 and cpu_env.THP_TUNABLE in calls[0]["GLIBC_TUNABLES"]
        assert calls[0][cpu_env.REEXEC_ENV] == "0"
    else:
        assert calls == []


def _parts_model_results(module, parts):
    variables = perturb(module.init(KEY, parts), seed=3)

    def loss(v, parts):
        out = module.apply(v, parts)
        return sum(jnp.sum(jnp.sin(o)) for o in layers.as_parts(out))

    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(variables, parts)
    return jax.make_jaxpr(loss)(variables, parts), value, grads


@pytest.mark.parametrize("module", [layers.Dense(6), layers.Conv3x3(6), GroupNorm(3)],
                         ids=["dense", "conv", "group_norm"])
def test_channel_parts_are_kept_on_cpu_and_concatenated_elsewhere(module, monkeypatch):
    parts = tuple(jax.random.normal(k, (2, 5, 5, c)) for k, c in
                  zip(jax.random.split(KEY), (8, 4)))
    cpu_jaxpr, *cpu = _parts_model_results(module, parts)
    monkeypatch.setattr(platforms, "backend", lambda: "gpu")
    gpu_jaxpr, *gpu = _parts_model_results(module, parts)
    assert "concatenate" not in str(cpu_jaxpr) and "concatenate" in str(gpu_jaxpr)
    _close(cpu, gpu)


def test_dense_kernel_gradient_is_custom_on_cpu_and_autodiff_elsewhere(monkeypatch):
    x = jax.random.normal(KEY, (3, 4, 8))
    dense = layers.Dense(5)
    variables = perturb(dense.init(KEY, x), seed=1)

    def grads():
        fn = jax.grad(lambda v, x: jnp.sum(jnp.sin(dense.apply(v, x))), argnums=(0, 1))
        return str(jax.make_jaxpr(fn)(variables, x)), fn(variables, x)

    cpu_jaxpr, cpu = grads()
    monkeypatch.setattr(platforms, "backend", lambda: "gpu")
    gpu_jaxpr, gpu = grads()
    assert "custom_vjp" in cpu_jaxpr and "custom_vjp" not in gpu_jaxpr
    _close(cpu, gpu)


def test_dropout_masks_are_the_same_bits_with_jax_own_hash_elsewhere(monkeypatch):
    shape = (4, 7, 7, 3)
    with jax.threefry_partitionable(False):
        expected = jax.random.bernoulli(KEY, 0.9, shape)
    cpu = dropout.bernoulli(KEY, 0.9, shape)
    cpu_jaxpr = str(jax.make_jaxpr(lambda k: dropout.bernoulli(k, 0.9, shape))(KEY))
    monkeypatch.setattr(platforms, "backend", lambda: "gpu")
    gpu = dropout.bernoulli(KEY, 0.9, shape)
    gpu_jaxpr = str(jax.make_jaxpr(lambda k: dropout.bernoulli(k, 0.9, shape))(KEY))
    np.testing.assert_array_equal(cpu, expected)
    np.testing.assert_array_equal(gpu, expected)
    assert "random_bits" not in cpu_jaxpr and "random_bits" in gpu_jaxpr


def _eval_bpd(config, variables, images):
    params = replicate(variables["params"], 1)
    metrics = make_eval_step(config)(params, images[None], replicate(KEY, 1))
    return {k: float(v[0]) for k, v in metrics.items()}


# bfloat16 activations (parameters, attention logits and the loss in float32) moved the test
# bound of these tiny models by 0.02% (no encoder) and 0.06% (with one); the tolerance stated
# for the option is 0.2%.
BF16_RTOL = 2e-3


@pytest.mark.parametrize("kind", ["none", "conv"])
def test_bfloat16_compute_gives_the_float32_losses_within_0_2_percent(kind):
    f32 = tiny_config(kind)
    bf16 = tiny_config(kind, compute_dtype="bfloat16")
    variables = perturb(init_params(f32, KEY), seed=6, scale=0.05)
    images = random_images(8, 8)
    a, b = _eval_bpd(f32, variables, images), _eval_bpd(bf16, variables, images)
    for name in ("bpd", "bpd_diff", "bpd_recon", "objective"):
        assert np.isfinite(b[name])
        np.testing.assert_allclose(b[name], a[name], rtol=BF16_RTOL)
    assert a["bpd"] != b["bpd"]  # bfloat16 was in fact used


def test_bfloat16_train_step_donates_the_state_and_updates_it():
    config = tiny_config("conv", compute_dtype="bfloat16")
    tx = make_optimizer(_optimizer_config(), num_steps=10)
    state = replicate(create_train_state(config, tx, KEY), 1)
    step = make_train_step(config, tx, ema_rate=0.99, beta=1.0, beta_warmup_steps=0)
    images = random_images(9, 4)[None, None]  # [D, S, b, H, W, C]
    old_params = jax.tree_util.tree_map(np.array, state.params)
    new, metrics = step(state, images, replicate(KEY, 1))
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(state))
    assert int(new.step[0]) == 1 and bool(metrics["finite"].all())
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(new.params))
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b[0]), old_params,
                                     new.params)
    assert any(jax.tree_util.tree_leaves(changed))


def _optimizer_config():
    return types.SimpleNamespace(
        name="adamw", learning_rate=1e-3, lr_warmup_steps=0, lr_decay=False, b1=0.9, b2=0.99,
        eps=1e-8, weight_decay=0.01, gradient_clip_norm=1.0, no_decay_leaves=("bias",),
        no_decay_modules=())


@pytest.mark.parametrize("cores, flags, expected", [
    (2, "", [cpu_env.CONV_FLAG, cpu_env.DEVICES_FLAG]),
    (16, "--xla_force_host_platform_device_count=4", [
        "--xla_force_host_platform_device_count=4", cpu_env.CONV_FLAG]),
    (2, "--xla_cpu_experimental_ynn_fusion_type=+dot", [
        "--xla_cpu_experimental_ynn_fusion_type=+dot", cpu_env.DEVICES_FLAG]),
    (1, "", []),
])
def test_cpu_settings_split_the_cores_into_two_devices_unless_told_otherwise(
        monkeypatch, cores, flags, expected):
    monkeypatch.setattr(cpu_env, "available_cores", lambda: cores)
    env = cpu_env.with_cpu_settings({"XLA_FLAGS": flags} if flags else {})
    assert env.get("XLA_FLAGS", "").split() == expected


@pytest.mark.parametrize("backend, devices, batches, channels, expected", [
    ("cpu", 2, (64, 64), 16, 2),  # MVDM: the batch split over the cores' two devices
    ("cpu", 2, (64, 64), 32, 2),  # TVDM
    ("cpu", 2, (64, 64), 64, 1),  # SVDM: its convolutions fill both cores already
    ("cpu", 2, (64, 33), 16, 1),  # a batch the two do not divide runs on one
    ("cpu", 1, (64, 64), 16, 1),
    ("gpu", 8, (64, 64), 64, 8),  # accelerators: all of them, whatever the width
    ("gpu", 8, (12, 64), 16, 8),  # ... and 12 over 8 is the config's error, not a fallback
])
def test_local_train_devices_per_platform(monkeypatch, backend, devices, batches, channels,
                                          expected):
    monkeypatch.setattr(platforms, "backend", lambda: backend)
    monkeypatch.setattr(platforms.jax, "local_device_count", lambda: devices)
    assert platforms.local_train_devices(batches, channels) == expected
