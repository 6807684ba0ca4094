"""Behaviour of the VDM-VAE: loss terms, schedules, conditioning, sampler, sizes, input checks."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IMAGE_SHAPE, W_DIM, perturb, random_images, tiny_config

from benchmarks import param_counts
from vdm_vae.model import diffusion, objective
from vdm_vae.model.config import EncoderConfig, LossConfig, ModelConfig, model_config_from_dict
from vdm_vae.model.schedules import make_schedule
from vdm_vae.model.vae import VDMVAE, init_params
from vdm_vae.sampling import encode, sample

KEY = jax.random.PRNGKey(42)


def _bin_centres(vocab_size):
    """Pixel value v -> centre of its bin in [-1, 1], computed independently of the library."""
    edges = np.linspace(-1.0, 1.0, vocab_size + 1)
    return 0.5 * (edges[:-1] + edges[1:])


def _with_perturbed(variables, subtree, seed):
    """Copy of `variables` whose params[subtree] got Gaussian noise."""
    params = dict(variables["params"])
    params[subtree] = perturb(params[subtree], seed)
    return {"params": params}


# ----------------------------------------------------------------------------- KL of w


def test_kl_of_w_equals_closed_form_and_monte_carlo(cond):
    config, variables = cond
    variables = _with_perturbed(variables, "encoder", seed=3)
    model, images = VDMVAE(config), random_images(0, 4)
    out = model.apply(variables, images, rngs={"sample": KEY})
    mean, logvar = model.apply(variables, images, method=VDMVAE.encode)
    m, s = np.asarray(mean, np.float64), np.exp(0.5 * np.asarray(logvar, np.float64))
    assert np.std(m) > 0.1 and np.std(np.log(s)) > 0.01  # a non-trivial posterior

    closed = np.log(1.0 / s) + 0.5 * (s**2 + m**2) - 0.5
    np.testing.assert_allclose(out.kl_w_per_dim, closed, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.kl_w, closed.sum(-1), rtol=1e-4)

    # E_q[log q(w) - log N(w; 0, I)] by sampling, for every example.
    eps = np.random.default_rng(0).standard_normal((100_000,) + m.shape)
    w = m + s * eps
    log_ratio = np.sum(-0.5 * eps**2 - np.log(s) + 0.5 * w**2, axis=-1)  # [N, B]
    mc, stderr = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(mc - np.asarray(out.kl_w)) < 5 * stderr)


# -------------------------------------------------- loss weights: objective vs full bound


def _objective(out, loss: LossConfig):
    """Batch-mean training objective in nats: VDM terms, beta times the KL objective, MMD."""
    kl = objective.kl_objective(out.kl_w_per_dim, loss.free_bits, loss.capacity)
    vdm = out.loss_recon + out.loss_klz + out.loss_diff
    return float(jnp.mean(vdm + loss.beta * kl) + loss.mmd_weight * out.mmd_w)


def _bpd(out, image_shape):
    """Batch-mean full bound in bits per dimension."""
    return float(np.mean(out.total)) / (np.prod(image_shape) * np.log(2.0))


def test_free_bits_and_beta_change_objective_but_not_bound(cond):
    config, variables = cond
    images = random_images(1, 4)
    losses = [LossConfig(), LossConfig(beta=0.25), LossConfig(free_bits=2.0),
              LossConfig(beta=3.0, free_bits=0.5, capacity=1.0, mmd_weight=1.0)]
    outs = [VDMVAE(dataclasses.replace(config, loss=loss)).apply(
        variables, images, rngs={"sample": KEY}) for loss in losses]
    for out in outs[1:]:
        for field in ("loss_recon", "loss_klz", "loss_diff", "kl_w_per_dim", "t"):
            np.testing.assert_array_equal(getattr(out, field), getattr(outs[0], field))
    bounds = [_bpd(out, IMAGE_SHAPE) for out in outs]
    objectives = [_objective(out, loss) for out, loss in zip(outs, losses, strict=True)]
    assert bounds == [bounds[0]] * len(bounds)
    assert objectives[0] == pytest.approx(float(np.mean(outs[0].total)), rel=1e-6)
    assert len(set(objectives)) == len(objectives)


def test_free_bits_floor_each_dimension_and_stop_its_gradient():
    kl = jnp.array([[0.1, 3.0, 0.2], [0.3, 1.0, 0.0]])  # dim means 0.2, 2.0, 0.1
    floored = objective.kl_objective(kl, free_bits=0.5, capacity=0.0)
    np.testing.assert_allclose(floored, [0.5 + 3.0 + 0.5, 0.5 + 1.0 + 0.5])
    grad = jax.grad(lambda k: jnp.sum(objective.kl_objective(k, 0.5, 0.0)))(kl)
    np.testing.assert_array_equal(grad, [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_allclose(objective.kl_objective(kl, 0.0, 0.0), kl.sum(-1))
    np.testing.assert_allclose(objective.kl_objective(kl, 0.0, 2.0), np.abs(kl.sum(-1) - 2.0))


# ------------------------------------------------------------------------------ decoder


@pytest.mark.parametrize("g_0", [-13.3, -5.0, 1.0])
def test_decoder_probabilities_sum_to_one(g_0):
    z = 1.2 * jax.random.normal(KEY, (2, 4, 4, 3))
    probs = jnp.exp(diffusion.decoder_logprobs(z, jnp.asarray(g_0), 256))
    np.testing.assert_allclose(jnp.sum(probs, axis=-1), 1.0, atol=1e-5)


def test_reconstruction_counts_each_channel_once():
    g_0, vocab = -5.0, 256
    x1 = random_images(2, 2, (4, 4, 1))
    centres = _bin_centres(vocab)
    z1 = centres[x1] + np.exp(0.5 * g_0) * np.random.default_rng(3).standard_normal(x1.shape)
    loss1 = diffusion.reconstruction_loss(x1, jnp.asarray(z1, jnp.float32), g_0, vocab)

    logits = -0.5 * ((z1[..., None] - centres) / np.exp(0.5 * g_0)) ** 2  # [B,H,W,1,V]
    log_norm = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))
    log_norm += logits.max(-1)
    picked = np.take_along_axis(logits, x1[..., None].astype(int), -1)[..., 0]
    np.testing.assert_allclose(loss1, np.sum(log_norm - picked, axis=(1, 2, 3)), rtol=1e-4)

    x3, z3 = np.repeat(x1, 3, axis=-1), np.repeat(z1, 3, axis=-1)
    loss3 = diffusion.reconstruction_loss(x3, jnp.asarray(z3, jnp.float32), g_0, vocab)
    np.testing.assert_allclose(loss3, 3.0 * np.asarray(loss1), rtol=1e-5)


# ---------------------------------------------------------------- diffusion loss in T


def test_discrete_diffusion_loss_approaches_continuous(uncond):
    config = dataclasses.replace(uncond[0], gamma_type="learnable_nnet")
    gamma = make_schedule(config).init(KEY, jnp.zeros((4,)))["params"]
    variables = perturb({"params": {**uncond[1]["params"], "gamma": gamma}}, seed=5, scale=0.05)
    images, t = random_images(4, 4), jnp.array([0.25, 0.5, 0.75, 1.0])

    def loss_diff(num_steps):
        out = VDMVAE(dataclasses.replace(config, sm_n_timesteps=num_steps)).apply(
            variables, images, t=t, rngs={"sample": KEY})
        np.testing.assert_array_equal(out.t, t)  # t on every grid: same t, same eps
        return np.asarray(out.loss_diff, np.float64)

    continuous = loss_diff(0)
    gaps = [np.max(np.abs(loss_diff(n) / continuous - 1.0)) for n in (8, 64, 512, 4096)]
    assert all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] < 5e-3, gaps


# ---------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("gamma_type", ["fixed", "learnable_scalar", "learnable_nnet"])
def test_schedule_is_monotone_and_spans_gamma_min_to_max(gamma_type):
    config = tiny_config(gamma_type=gamma_type, gamma_min=-10.0, gamma_max=7.0)
    schedule, grid = make_schedule(config), jnp.linspace(0.0, 1.0, 201)
    variables = schedule.init(KEY, grid)

    def gamma(v, t):
        return np.reshape(schedule.apply(v, t), np.shape(t))

    assert gamma(variables, 0.0) == pytest.approx(-10.0, abs=1e-3)
    assert gamma(variables, 1.0) == pytest.approx(7.0, abs=1e-3)
    assert np.all(np.diff(gamma(variables, grid)) > 0)
    flipped = jax.tree_util.tree_map(jnp.negative, perturb(variables, seed=6, scale=2.0))
    assert np.all(np.diff(gamma(flipped, grid)) >= 0)  # monotone whatever the weights' signs


def test_antithetic_times_cover_unit_interval_evenly(uncond):
    config, variables = uncond
    model_t = VDMVAE(config).apply(variables, random_images(5, 4), rngs={"sample": KEY}).t
    for t in (model_t, diffusion.sample_times(KEY, 5, True), diffusion.sample_times(KEY, 16, True)):
        t = np.sort(np.asarray(t, np.float64))
        assert t[0] >= 0.0 and t[-1] < 1.0
        gaps = np.diff(np.concatenate([t, [t[0] + 1.0]]))
        np.testing.assert_allclose(gaps, 1.0 / len(t), atol=1e-6)
    iid = np.sort(diffusion.sample_times(KEY, 16, antithetic=False))
    assert not np.allclose(np.diff(iid), 1.0 / 16, atol=1e-3)


# -------------------------------------------------------------------- conditioning on w


def _set_cond_proj(params, value_fn):
    """Replaces every cond_proj kernel by value_fn(kernel)."""
    def visit(path, x):
        names = [getattr(p, "key", None) for p in path]
        return value_fn(x) if "cond_proj" in names else x
    return jax.tree_util.tree_map_with_path(visit, params)


def test_w_reaches_eps_hat_only_through_cond_proj(cond):
    config, variables = cond
    model = VDMVAE(config)
    z = jax.random.normal(KEY, (2,) + IMAGE_SHAPE)
    g_t, (w1, w2) = jnp.array([-3.0, 2.0]), jax.random.normal(KEY, (2, 2, W_DIM))

    def changes(v):
        eps_1, eps_2 = (model.apply(v, z, g_t, w, method=VDMVAE.score) for w in (w1, w2))
        return float(jnp.max(jnp.abs(eps_1 - eps_2)))

    assert changes(variables) == 0.0  # at init cond_proj is zero
    active = _with_perturbed(variables, "score_model", seed=7)
    assert changes({"params": _set_cond_proj(active["params"], jnp.zeros_like)}) == 0.0
    assert changes(active) > 1e-3


def test_w_noise_is_drawn_after_the_bound_noise(cond):
    """Drawing w from q(w|x) leaves the key's eps_0, t and eps as they are without a draw of
    w, as in a run without an encoder: the bounds of such runs are paired."""
    config, variables = cond  # cond_proj is zero at init: eps_hat ignores w
    images, model = random_images(3, 4), VDMVAE(config)
    drawn = model.apply(variables, images, rngs={"sample": KEY})
    given = model.apply(variables, images, w=jnp.ones((4, W_DIM)), rngs={"sample": KEY})
    for term in ("t", "loss_recon", "loss_diff"):
        np.testing.assert_array_equal(getattr(drawn, term), getattr(given, term), err_msg=term)


@pytest.mark.parametrize("kind", ["conv", "conv_time"])
def test_gradients_reach_every_encoder_parameter(kind):
    config = tiny_config(kind)
    params = dict(init_params(config, KEY)["params"])
    params["score_model"] = perturb(params["score_model"], seed=8)  # non-zero cond_proj
    images, model = random_images(6, 4), VDMVAE(config)

    def loss(encoder_params, term):
        out = model.apply({"params": {**params, "encoder": encoder_params}}, images,
                          rngs={"sample": KEY})
        return jnp.mean(term(out))

    # The full bound, and the diffusion term alone, which w reaches only via cond_proj.
    grads = jax.jit(lambda e: [jax.grad(loss)(e, lambda o: o.total),
                               jax.grad(loss)(e, lambda o: o.loss_diff)])(params["encoder"])
    for name, grad in zip(("total", "loss_diff"), grads, strict=True):
        flat = jax.tree_util.tree_flatten_with_path(grad)[0]
        dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(np.asarray(g) != 0)]
        assert not dead, (name, dead)


# ------------------------------------------------------------------------------ sampler


@pytest.mark.parametrize("setup", ["uncond", "cond"])
def test_sampler_is_deterministic_per_key(setup, request):
    config, variables = request.getfixturevalue(setup)
    w = jax.random.normal(KEY, (2, W_DIM)) if config.conditional else None

    def run(params, seed):
        return np.asarray(sample(params, w, config=config, num_samples=2,
                                 rng=jax.random.PRNGKey(seed), num_steps=4))

    first = run(variables, 0)
    assert first.dtype == np.uint8 and first.shape == (2,) + IMAGE_SHAPE
    np.testing.assert_array_equal(run(variables, 0), first)
    np.testing.assert_array_equal(run(variables["params"], 0), first)  # bare tree accepted
    assert np.any(run(variables, 1) != first)


def test_encode_accepts_init_params(cond):
    config, variables = cond
    images = random_images(7, 4)
    mean, std = encode(variables, images, config=config)
    assert mean.shape == std.shape == (4, W_DIM) and np.all(np.asarray(std) > 0)
    ref_mean, ref_logvar = VDMVAE(config).apply(variables, images, method=VDMVAE.encode)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.exp(0.5 * np.asarray(ref_logvar)), rtol=1e-5)


# ---------------------------------------------------------------- size of the original


def test_cifar10_score_unet_has_the_original_names_shapes_and_size():
    config = ModelConfig(image_shape=(32, 32, 3), sm_n_layer=32, sm_n_embd=128,
                         with_fourier_features=True, with_attention=False,
                         gamma_type="learnable_scalar")
    shapes = jax.eval_shape(lambda k: init_params(config, k), KEY)["params"]
    flat = {jax.tree_util.keystr(p, simple=True, separator="/"): x.shape
            for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert {k.split("/")[0] for k in flat} == {"score_model", "gamma"}
    assert sum(int(np.prod(s)) for s in flat.values()) == 30_578_181
    n, c_fourier = 128, 3 * (1 + 2 * 2)  # z plus sin/cos at two frequencies per channel
    expected = {
        "score_model/dense0/kernel": (n + 1, 4 * n), "score_model/dense1/kernel": (4 * n, 4 * n),
        "score_model/conv_in/kernel": (3, 3, c_fourier, n),
        "score_model/down.block_0/cond_proj/kernel": (4 * n, n),
        "score_model/down.block_0/conv1/kernel": (3, 3, n, n),
        "score_model/down.block_31/GroupNorm_1/scale": (n,),
        "score_model/mid.block_1/conv2/kernel": (3, 3, n, n),
        "score_model/mid.attn_1/q/kernel": (n, n), "score_model/mid.attn_1/proj_out/bias": (n,),
        "score_model/mid.attn_1/GroupNorm_0/scale": (n,),
        "score_model/up.block_0/nin_shortcut/kernel": (2 * n, n),
        "score_model/up.block_0/conv1/kernel": (3, 3, 2 * n, n),
        "score_model/up.block_32/cond_proj/kernel": (4 * n, n),
        "score_model/GroupNorm_0/scale": (n,), "score_model/conv_out/kernel": (3, 3, n, 3),
        "gamma/w": (1,), "gamma/b": (1,),
    }
    assert {k: flat.get(k) for k in expected} == expected
    absent = ["score_model/down.block_32/conv1/kernel", "score_model/down.attn_0/q/kernel",
              "score_model/mid.block_1/nin_shortcut/kernel", "score_model/up.block_33/conv1/kernel"]
    assert not [k for k in absent if k in flat]


def test_param_counts_match_study_encoders_and_w_adds_only_dense0_rows():
    rows = {r["model"]: r["here"] for r in param_counts.encoder_rows()}
    assert rows == {"OE++": 716_481, "OE": 515_521, "SE": 261_793, "TE": 216_529}
    for n_layer, n_embd in ((4, 16), (8, 32)):
        sizes = {w_dim: param_counts.decoder_params(param_counts.vdm_config(n_layer, n_embd, w_dim))
                 for w_dim in (0, 128, 256)}
        assert sizes[128] - sizes[0] == 127 * 4 * n_embd
        assert sizes[256] - sizes[0] == 255 * 4 * n_embd


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("images, expected", [
    (random_images(0, 2).astype(np.float32), ["float32", "uint8"]),
    (random_images(0, 2)[0], ["rank 4", "(8, 8, 1)"]),
    (np.full((2,) + IMAGE_SHAPE, 300, np.int32), ["[300, 300]", "[0, 255]"]),
    (random_images(0, 2, (8, 8, 3)), ["(8, 8, 3)", "(8, 8, 1)"]),
    (np.full((2,) + IMAGE_SHAPE, np.nan, np.float32), ["float32", "uint8"]),
])
def test_bad_images_are_rejected_with_given_and_expected(cond, images, expected):
    config, variables = cond
    with pytest.raises(ValueError) as err:
        encode(variables, images, config=config)
    assert all(s in str(err.value) for s in expected), str(err.value)


@pytest.mark.parametrize("setup, w, expected", [
    ("cond", np.zeros((2, W_DIM + 1)), [f"(2, {W_DIM + 1})", f"[B, {W_DIM}]"]),
    ("cond", np.zeros((W_DIM,)), [f"({W_DIM},)", f"[B, {W_DIM}]"]),
    ("uncond", np.zeros((2, W_DIM)), [f"(2, {W_DIM})", "None"]),
    ("cond", np.full((2, W_DIM), np.nan), [f"{2 * W_DIM} non-finite", "NaN"]),
    ("cond", np.eye(2, W_DIM) / 0.0, ["non-finite"]),
])
def test_bad_w_is_rejected_with_given_and_expected(setup, w, expected, request):
    config, variables = request.getfixturevalue(setup)
    with pytest.raises(ValueError) as err:
        sample(variables, w, config=config, rng=KEY, num_steps=2)
    assert all(s in str(err.value) for s in expected), str(err.value)


@pytest.mark.parametrize("make, field", [
    (lambda: tiny_config(gamma_type="cosine"), "gamma_type"),
    (lambda: tiny_config(gamma_min=6.0), "gamma_min"),
    (lambda: tiny_config(sm_norm_groups=5), "sm_norm_groups"),
    (lambda: tiny_config(sm_pdrop=1.0), "sm_pdrop"),
    (lambda: tiny_config(image_shape=(8, 8)), "image_shape"),
    (lambda: tiny_config(encoder=EncoderConfig(kind="mlp")), "encoder.kind"),
    (lambda: tiny_config(encoder=EncoderConfig(kind="conv", w_dim=0)), "encoder.w_dim"),
    (lambda: tiny_config(encoder=EncoderConfig(kind="conv", norm_num_groups=7)),
     "encoder.norm_num_groups"),
    (lambda: tiny_config(loss=LossConfig(beta=-1.0)), "loss.beta"),
    (lambda: model_config_from_dict({"sm_layers": 3}), "sm_layers"),
    (lambda: model_config_from_dict({"loss": {"kl_weight": 1.0}}), "loss.kl_weight"),
])
def test_config_errors_name_the_field(make, field):
    with pytest.raises(ValueError, match=f"config.model.{field}"):
        make()
