"""The w-space VDM prior learned with the model (config.w_prior_vdm): its KL term bounds the KL
to that prior, the bound and the objective, gradients, samples, parameters, config checks."""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import W_DIM, perturb, random_images, tiny_config

import vdm_vae.sampling
from vdm_vae.evaluation import fitted_prior
from vdm_vae.model import objective, w_vdm
from vdm_vae.model.config import LossConfig
from vdm_vae.model.vae import VDMVAE, init_params, joint_prior_config
from vdm_vae.sampling import draw_prior_w, sample

KEY = jax.random.PRNGKey(0)
HIDDEN = 32


def _joint_model(perturb_prior: bool = True, **overrides):
    """A tiny model with the w-VDM prior, a non-trivial encoder and (optionally) a non-zero
    score MLP of the prior."""
    config = tiny_config("conv", w_prior_vdm=True, w_prior_vdm_hidden=HIDDEN, **overrides)
    params = dict(init_params(config, jax.random.PRNGKey(1))["params"])
    params["encoder"] = perturb(params["encoder"], seed=3)
    if perturb_prior:
        params["w_prior_vdm"] = perturb(params["w_prior_vdm"], seed=4)
    return config, {"params": params}


def _kl_draws(config, variables, images, draws):
    """The model's KL term [draws, B] over `draws` keys.

    The parameters are arguments of the jitted function, as in training: closed over, they are
    constants, and this XLA:CPU (jax 0.10.2) then computes the zero-initialised score network's
    ||eps - eps_hat||^2 wrongly (NaN, inf or noise) in some compilations.
    """
    model = VDMVAE(config)

    def kl(v, r):
        return model.apply(v, images, rngs={"sample": r}).kl_w

    outs = jax.jit(jax.vmap(kl, in_axes=(None, 0)))(variables, jax.random.split(KEY, draws))
    return np.asarray(outs, np.float64)


def test_the_kl_term_estimates_the_fitted_priors_bound_on_the_same_codes_and_prior():
    """Averaged over draws, the model's one-draw KL term equals fitted_prior.kl_to_prior_bound
    (many stratified draws) for the same q(w|x) and prior parameters: the same upper bound on
    KL(q(w|x) || p_psi)."""
    config, variables = _joint_model()
    images = random_images(0, 4)
    model_kl = _kl_draws(config, variables, images, draws=256)  # [draws, B]
    mean, logvar = VDMVAE(config).apply(variables, images, method=VDMVAE.encode)
    repeats = 512
    ref = fitted_prior.kl_to_prior_bound(
        variables["params"]["w_prior_vdm"], jnp.tile(mean, (repeats, 1)),
        jnp.tile(logvar, (repeats, 1)), jax.random.PRNGKey(5), joint_prior_config(config),
        draws=4)
    ref = np.asarray(ref, np.float64).reshape(repeats, -1)  # [repeats, B]
    var = model_kl.var(0) / len(model_kl) + ref.var(0) / len(ref)
    diff = model_kl.mean(0) - ref.mean(0)
    assert np.all(model_kl.std(0) > 0.1)  # a draw-dependent estimate
    assert np.all(np.abs(diff) < 5 * np.sqrt(var))
    assert abs(diff.mean()) < 4 * np.sqrt(var.sum()) / len(var)  # pooled over the examples


def _expected_bound_and_exact_kl(m, v, c: w_vdm.PriorConfig):
    """With a zero score MLP: the expected KL bound E_q[neg_elbo] - H[q] in closed form, and
    the exact KL(q || p_psi) [B] for q = N(m, v) [B,D].

    eps_hat is then 0, or sigma_t z_t with the normal base, and p_psi is Gaussian in the
    continuous-time limit: N(0, (1 + 2 e^{gamma_max}) I), or N(0, (1 + 2 e^{gamma_min}) I) (the
    reverse process of w ~ N(0, I) with its exact score; 1 + 2 e^gamma adds the decoder's
    variance e^{gamma_0} to that of z_0 / alpha_0).
    """
    g0, g1, d = c.gamma_min, c.gamma_max, m.shape[-1]
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    var1, w_sq = sigmoid(g1), np.sum(m ** 2 + v, -1)
    bound = (0.5 * d * (np.log(2 * np.pi) + g0 + 1)
             + 0.5 * np.sum((1 - var1) * (m ** 2 + v) + var1 - np.log(var1) - 1, -1)
             - 0.5 * np.sum(1 + np.log(2 * np.pi) + np.log(v), -1))
    if c.normal_base:  # E||alpha_t^2 eps - sigma_t alpha_t w||^2, integrated over d gamma / 2
        alpha2_sigma2 = sigmoid(-g0) - sigmoid(-g1)  # int alpha^2 sigma^2 d gamma
        alpha4 = np.log1p(np.exp(-g0)) - np.log1p(np.exp(-g1)) - alpha2_sigma2
        bound = bound + 0.5 * (d * alpha4 + w_sq * alpha2_sigma2)
        prior_var = 1 + 2 * np.exp(g0)
    else:  # E||eps||^2 = d
        bound = bound + 0.5 * (g1 - g0) * d
        prior_var = 1 + 2 * np.exp(g1)
    exact = np.sum(0.5 * np.log(prior_var / v) + (v + m ** 2) / (2 * prior_var) - 0.5, -1)
    return bound, exact


def _codes(seed, n=4, d=W_DIM):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.exp(rng.normal(-1.0, 0.5, size=(n, d)))


@pytest.mark.parametrize("normal_base", [False, True])
def test_with_a_zero_mlp_the_kl_bound_is_its_closed_form_and_above_the_exact_kl(normal_base):
    """fitted_prior.kl_to_prior_bound (the estimate the model's term equals, above) against the
    closed forms of a zero score MLP: it averages to the expected bound, which lies above the
    exact KL to p_psi by a small gap. Without the normal base p_psi is nearly flat (variance
    1 + 2 e^8); with it, N(0, I) up to e^{-10}."""
    c = w_vdm.PriorConfig(w_dim=W_DIM, hidden=HIDDEN, normal_base=normal_base)
    params = w_vdm.WScoreNet(c).init(KEY, jnp.zeros((1, W_DIM)), jnp.zeros((1,)))["params"]
    m, v = _codes(6)
    repeats = 2048
    mean, logvar = (jnp.tile(jnp.asarray(x, jnp.float32), (repeats, 1)) for x in (m, np.log(v)))
    est = fitted_prior.kl_to_prior_bound(params, mean, logvar, KEY, c, draws=4)
    est = np.asarray(est, np.float64).reshape(repeats, -1)
    bound, exact = _expected_bound_and_exact_kl(m, v, c)
    stderr = est.std(0) / np.sqrt(repeats)
    assert np.all(np.abs(est.mean(0) - bound) < 5 * stderr)
    gap = bound - exact
    assert np.all(gap > 0) and np.all(gap < (0.2 * W_DIM if not normal_base else 0.01))


def test_the_joint_prior_starts_as_n01_and_the_kl_term_averages_to_its_closed_form():
    """At initialisation (zero score MLP on the normal base) the model's KL term averages to the
    closed form of its expected bound, within a small gap of the KL to N(0, I) that the default
    model pays."""
    config, variables = _joint_model(perturb_prior=False)
    images = random_images(1, 4)
    model_kl = _kl_draws(config, variables, images, draws=256)
    mean, logvar = VDMVAE(config).apply(variables, images, method=VDMVAE.encode)
    m, v = np.asarray(mean, np.float64), np.exp(np.asarray(logvar, np.float64))
    bound, exact = _expected_bound_and_exact_kl(m, v, joint_prior_config(config))
    stderr = model_kl.std(0) / np.sqrt(len(model_kl))
    assert np.all(np.abs(model_kl.mean(0) - bound) < 5 * stderr)
    kl_standard = np.sum(0.5 * (m ** 2 + v - 1 - np.log(v)), -1)
    assert np.all(bound > exact) and np.all(np.abs(bound - kl_standard) < 0.01)


@pytest.mark.parametrize("normal_base", [False, True])
def test_with_a_zero_mlp_the_sampler_draws_the_gaussian_of_its_chain(normal_base):
    """With a zero score MLP the ancestral sampler is a linear-Gaussian chain,
    z_s = a z_t + sigma_s sqrt(c) n with a = alpha_s / alpha_t (1 - sigma_t^2 c [normal base]):
    its draws have the chain's variance."""
    c, steps = w_vdm.PriorConfig(w_dim=W_DIM, hidden=HIDDEN, normal_base=normal_base), 200
    params = w_vdm.WScoreNet(c).init(KEY, jnp.zeros((1, W_DIM)), jnp.zeros((1,)))["params"]
    draws = np.asarray(w_vdm.sample_w(params, KEY, config=c, num=4000, steps=steps), np.float64)
    gammas = c.gamma_min + (c.gamma_max - c.gamma_min) * np.arange(steps + 1) / steps
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    var = 1.0  # of z_1
    for g_s, g_t in zip(gammas[-2::-1], gammas[:0:-1], strict=True):
        cc = -np.expm1(g_s - g_t)
        a = np.sqrt(sigmoid(-g_s) / sigmoid(-g_t)) * (1 - normal_base * sigmoid(g_t) * cc)
        var = a ** 2 * var + sigmoid(g_s) * cc
    var /= sigmoid(-gammas[0])  # w = z_0 / alpha_0
    np.testing.assert_allclose(draws.var(), var, rtol=0.05)
    assert abs(draws.mean()) < 4 * np.sqrt(var / draws.size)


def test_the_bound_adds_the_kl_term_and_the_objective_is_the_bound_at_weight_one():
    config, variables = _joint_model()
    images, model = random_images(2, 4), VDMVAE(config)
    out = model.apply(variables, images, rngs={"sample": KEY})
    assert out.kl_w_per_dim.shape == (4, 0)  # no per-dimension form under a learned prior
    terms = objective.bpd_terms(out, config.image_shape)
    np.testing.assert_allclose(terms["bpd"], terms["bpd_recon"] + terms["bpd_prior"]
                               + terms["bpd_diff"] + terms["bpd_kl_w"], rtol=1e-6)
    np.testing.assert_allclose(out.total, out.loss_recon + out.loss_klz + out.loss_diff
                               + out.kl_w, rtol=1e-6)

    def bound(params):
        out = model.apply({"params": params}, images, rngs={"sample": KEY})
        return jnp.mean(objective.bpd_terms(out, config.image_shape)["bpd"])

    def train(params):
        out = model.apply({"params": params}, images, rngs={"sample": KEY})
        return objective.training_objective(out, config.loss, config.image_shape,
                                            jnp.asarray(1.0))

    (b, g_b), (o, g_o) = jax.jit(lambda p: (jax.value_and_grad(bound)(p),
                                            jax.value_and_grad(train)(p)))(variables["params"])
    np.testing.assert_allclose(o, b, rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(g_o), jax.tree_util.tree_leaves(g_b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7)


def _grad_fn(config, images, capacity: float):
    """jitted (params, beta) -> gradient of the training objective with that capacity target."""
    loss = LossConfig(capacity=capacity)

    def train(params, beta):
        out = VDMVAE(config).apply({"params": params}, images, rngs={"sample": KEY})
        return objective.training_objective(out, loss, config.image_shape, beta)

    return jax.jit(jax.grad(train))


def test_gradients_reach_encoder_and_prior_and_the_prior_always_fits_by_its_bound():
    """The encoder learns from beta * |KL - capacity| (through w = mu + sigma eps), the prior's
    parameters from the plain KL term whatever beta and the capacity target."""
    config, variables = _joint_model()
    images, params = random_images(3, 4), variables["params"]
    uncapped, capped = _grad_fn(config, images, 0.0), _grad_fn(config, images, 1e4)
    plain = uncapped(params, 1.0)
    for module in ("encoder", "w_prior_vdm"):
        flat = jax.tree_util.tree_flatten_with_path(plain[module])[0]
        dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(np.asarray(g) != 0)]
        assert not dead, (module, dead)
    free, below = uncapped(params, 0.0), capped(params, 1.0)  # beta 0; KL far below 10^4
    for other in (free, below):
        for x, y in zip(jax.tree_util.tree_leaves(other["w_prior_vdm"]),
                        jax.tree_util.tree_leaves(plain["w_prior_vdm"]), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # Below the capacity target the encoder is pushed to raise the KL: its KL gradient turns.
    kl_grad = np.asarray(plain["encoder"]["dense"]["kernel"] - free["encoder"]["dense"]["kernel"])
    capped_kl_grad = np.asarray(below["encoder"]["dense"]["kernel"]
                                - free["encoder"]["dense"]["kernel"])
    assert np.abs(kl_grad).max() > 0.1
    np.testing.assert_allclose(capped_kl_grad, -kl_grad, atol=0.01 * np.abs(kl_grad).max())


def test_sample_draws_w_from_the_learned_prior(monkeypatch):
    config, variables = _joint_model()
    prior = variables["params"]["w_prior_vdm"]
    drawn = draw_prior_w(variables, config, 16, KEY)
    same = fitted_prior.sample_w(prior, KEY, config=joint_prior_config(config), num=16)
    np.testing.assert_array_equal(drawn, same)  # the prior's own ancestral sampler
    assert w_vdm.sample_w is fitted_prior.sample_w

    seen = []

    def recording(*args, **kwargs):
        seen.append(draw_prior_w(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(vdm_vae.sampling, "draw_prior_w", recording)
    rng = jax.random.PRNGKey(3)
    images = sample(variables, config=config, rng=rng, num_steps=2, num_samples=3)
    (w,) = seen
    assert w.shape == (3, W_DIM)
    np.testing.assert_array_equal(
        w, w_vdm.sample_w(prior, jax.random.fold_in(rng, 7), config=joint_prior_config(config),
                          num=3))
    np.testing.assert_array_equal(images, sample(variables, w, config=config, rng=rng,
                                                 num_steps=2))


def test_the_prior_adds_only_its_own_parameters():
    config, variables = _joint_model(perturb_prior=False)
    plain = init_params(dataclasses.replace(config, w_prior_vdm=False), jax.random.PRNGKey(1))
    assert set(variables["params"]) - set(plain["params"]) == {"w_prior_vdm"}
    shapes = {k: v.shape for k, v in flax.traverse_util.flatten_dict(
        variables["params"]["w_prior_vdm"], sep="/").items()}
    assert shapes == {"dense0/kernel": (W_DIM + 64, HIDDEN), "dense0/bias": (HIDDEN,),
                      "dense1/kernel": (HIDDEN, HIDDEN), "dense1/bias": (HIDDEN,),
                      "dense2/kernel": (HIDDEN, HIDDEN), "dense2/bias": (HIDDEN,),
                      "out/kernel": (HIDDEN, W_DIM), "out/bias": (W_DIM,)}


def test_a_batch_split_by_example_ids_sees_the_same_prior_noise():
    """With example_ids the KL term of an example does not depend on the rest of its batch
    (the training step splits a batch over devices)."""
    config, variables = _joint_model()
    images, model = random_images(4, 4), VDMVAE(config)
    t, ids = jnp.array([0.1, 0.4, 0.6, 0.9]), jnp.arange(4)

    def kl(sl):
        return model.apply(variables, images[sl], t=t[sl], example_ids=ids[sl],
                           rngs={"sample": KEY}).kl_w

    halves = np.concatenate([kl(slice(0, 2)), kl(slice(2, 4))])
    np.testing.assert_allclose(halves, kl(slice(0, 4)), rtol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(kind="none", w_prior_vdm=True), "w_prior_vdm=True"),
    (dict(w_prior_vdm=True, w_prior_components=2), "w_prior_components=2"),
    (dict(w_prior_vdm=True, loss=LossConfig(free_bits=0.1)), "free_bits"),
    (dict(w_prior_vdm=True, loss=LossConfig(mmd_weight=1.0)), "mmd_weight"),
    (dict(w_prior_vdm=True, w_prior_vdm_hidden=0), "w_prior_vdm_hidden=0"),
])
def test_bad_joint_prior_settings_name_the_field(overrides, message):
    kind = overrides.pop("kind", "conv")
    with pytest.raises(ValueError, match=message):
        tiny_config(kind, **overrides)
