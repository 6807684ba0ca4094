"""DDIM and DPM-Solver++(2M): exact answers on Gaussian data, the log-SNR grid, the public API.

The exact tests use data whose ideal denoiser is known in closed form. For x ~ N(m, s^2) and
z = alpha x + sigma eps, (eps, z) are jointly Gaussian with Cov(eps, z) = sigma and
Var(z) = alpha^2 s^2 + sigma^2, so the minimiser of the VDM's loss is
    eps*(z, gamma) = E[eps | z] = sigma (z - alpha m) / (alpha^2 s^2 + sigma^2).
The probability-flow ODE is then linear and maps z_1 to
    z_0*(z_1) = alpha_0 m + (v_0 / v_1) (z_1 - alpha_1 m),   v_t = sqrt(alpha_t^2 s^2 + sigma_t^2),
the affine map that carries q(z_1) = N(alpha_1 m, v_1^2) to q(z_0) = N(alpha_0 m, v_0^2).
For a mixture sum_k pi_k N(m_k, s_k^2), E[eps | z] = sum_k r_k(z) sigma (z - alpha m_k) / v_k^2
with responsibilities r_k(z) proportional to pi_k N(z; alpha m_k, v_k^2).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IMAGE_SHAPE, W_DIM, random_images, tiny_config
from jax.scipy.special import ndtri

from vdm_vae.model import samplers
from vdm_vae.model.schedules import make_schedule
from vdm_vae.model.vae import VDMVAE
from vdm_vae.sampling import (
    decode_from_noise,
    decode_z0,
    draw_prior_w,
    encode,
    encode_to_noise,
    posterior,
    reverse_steps,
    sample,
)

GAMMA_MIN, GAMMA_MAX = -13.3, 5.0
KEY = jax.random.PRNGKey(0)
MEAN, STD = jnp.array([0.3, -0.5]), jnp.array([0.2, 0.05])  # two independent Gaussian dims


def fixed_gamma(t):
    return GAMMA_MIN + (GAMMA_MAX - GAMMA_MIN) * t


def gaussian_eps(mean, std):
    """eps*(z, gamma) of x ~ N(mean, std^2) per dimension: z [n, D], mean and std [D]."""

    def eps_fn(z, gamma):
        alpha, sigma = samplers.alpha_sigma(gamma)
        return sigma * (z - alpha * mean) / (alpha ** 2 * std ** 2 + sigma ** 2)

    return eps_fn


def mixture_eps(weights, means, stds):
    """eps*(z, gamma) of the 1-D mixture sum_k weights_k N(means_k, stds_k^2): z [n, 1]."""

    def eps_fn(z, gamma):
        alpha, sigma = samplers.alpha_sigma(gamma)
        var = alpha ** 2 * stds ** 2 + sigma ** 2  # [K]
        resid = z[..., None] - alpha * means  # [n, 1, K]
        resp = jax.nn.softmax(jnp.log(weights) - 0.5 * resid ** 2 / var - 0.5 * jnp.log(var),
                              axis=-1)
        return jnp.sum(resp * sigma * resid / var, axis=-1)

    return eps_fn


def exact_flow(z, inverse=False):
    """z_0*(z_1) of the Gaussian data MEAN, STD, or z_1*(z_0) if inverse: [n, 2] -> [n, 2]."""
    (a_1, s_1), (a_0, s_0) = (samplers.alpha_sigma(jnp.float32(g)) for g in (GAMMA_MAX, GAMMA_MIN))
    v_1, v_0 = jnp.sqrt(a_1 ** 2 * STD ** 2 + s_1 ** 2), jnp.sqrt(a_0 ** 2 * STD ** 2 + s_0 ** 2)
    if inverse:
        return a_1 * MEAN + v_1 / v_0 * (z - a_0 * MEAN)
    return a_0 * MEAN + v_0 / v_1 * (z - a_1 * MEAN)


def normal_quantiles(n):
    """n evenly spread draws of N(0, 1): its quantiles at (i + 0.5) / n, [n]."""
    return ndtri((jnp.arange(n) + 0.5) / n)


Z_1 = jnp.stack([normal_quantiles(2000), normal_quantiles(2000)[::-1]], axis=-1)  # [2000, 2]
ALPHA_0 = float(samplers.alpha_sigma(jnp.float32(GAMMA_MIN))[0])


def active(tree, seed, scale=0.1):
    """`tree` plus Gaussian noise drawn by NumPy (nothing to compile), so that zero-initialised
    layers, such as the score network's last, act."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) + scale * rng.standard_normal(np.shape(x)).astype(np.float32),
        tree)


def run(sampler, eps_fn, z, num_steps, reverse=False, **kwargs):
    """`sampler` over the fixed schedule's log-SNR grid, z_1 -> z_0 (z_0 -> z_1 if reverse)."""
    gammas = fixed_gamma(samplers.logsnr_times(fixed_gamma, num_steps))
    gammas = gammas[::-1] if reverse else gammas
    return jax.jit(lambda z: sampler(eps_fn, z, gammas, **kwargs))(z)


def flow_error(sampler, num_steps):
    """Largest |x - x*| over Z_1, x = z_0 / alpha_0 in data units."""
    z_0 = run(sampler, gaussian_eps(MEAN, STD), Z_1, num_steps)
    return float(jnp.max(jnp.abs(z_0 - exact_flow(Z_1)))) / ALPHA_0


# ------------------------------------------------------------------- exact answers


@pytest.mark.parametrize("sampler, num_steps, flow_tol, std_rtol", [
    (samplers.ddim, 50, 0.05, 0.06), (samplers.dpm_solver_2m, 25, 0.01, 0.02)])
def test_gaussian_samples_follow_the_exact_flow_and_match_the_moments(sampler, num_steps,
                                                                      flow_tol, std_rtol):
    x = run(sampler, gaussian_eps(MEAN, STD), Z_1, num_steps) / ALPHA_0
    assert float(jnp.max(jnp.abs(x * ALPHA_0 - exact_flow(Z_1)))) / ALPHA_0 < flow_tol
    # z_1 ~ N(0, I) rather than q(z_1) = N(alpha_1 m, v_1^2) moves the exact mean by ~0.005.
    np.testing.assert_allclose(jnp.mean(x, axis=0), MEAN, atol=0.01)
    np.testing.assert_allclose(jnp.std(x, axis=0), STD, rtol=std_rtol)


def test_dpm_solver_is_second_order_and_beats_ddim_at_few_steps():
    ddim = {n: flow_error(samplers.ddim, n) for n in (10, 25, 50)}
    dpm = {n: flow_error(samplers.dpm_solver_2m, n) for n in (10, 25, 50)}
    assert dpm[10] < ddim[10] / 3, (dpm, ddim)
    assert 1.6 < ddim[25] / ddim[50] < 2.4, ddim  # error ~ 1 / N
    assert dpm[25] / dpm[50] > 3.0, dpm  # error ~ 1 / N^2


@pytest.mark.parametrize("sampler, num_steps, std_tol", [
    (samplers.ddim, 50, 0.015), (samplers.dpm_solver_2m, 25, 0.006)])
def test_mixture_samples_match_weights_mean_and_std(sampler, num_steps, std_tol):
    weights, means, stds = jnp.array([0.3, 0.7]), jnp.array([-0.6, 0.4]), jnp.array([0.1, 0.15])
    mean = float(jnp.sum(weights * means))
    std = float(jnp.sqrt(jnp.sum(weights * (stds ** 2 + means ** 2)) - mean ** 2))
    x = run(sampler, mixture_eps(weights, means, stds), normal_quantiles(4000)[:, None],
            num_steps) / ALPHA_0
    assert abs(float(jnp.mean(x < -0.1)) - 0.3) < 0.01  # the first component's share
    assert abs(float(jnp.mean(x)) - mean) < 0.01
    assert abs(float(jnp.std(x)) - std) < std_tol


def test_ddim_with_noise_matches_the_moments():
    z_1 = jax.random.normal(KEY, (4000, 2))
    x = run(samplers.ddim, gaussian_eps(MEAN, STD), z_1, 50, eta=0.5, rng=KEY) / ALPHA_0
    np.testing.assert_allclose(jnp.mean(x, axis=0), MEAN, atol=0.015)
    np.testing.assert_allclose(jnp.std(x, axis=0), STD, rtol=0.08)  # -3.8%, -4.7% at 50 steps


def test_inversion_then_sampling_returns_the_input():
    eps_fn = gaussian_eps(MEAN, STD)
    x = MEAN + STD * Z_1[:500]
    exact_z_1 = exact_flow(ALPHA_0 * x, inverse=True)

    def round_trip(sampler, num_steps):
        """Largest errors of the inversion (z_1) and of the round trip (x)."""
        z_1 = run(sampler, eps_fn, ALPHA_0 * x, num_steps, reverse=True)
        back = run(sampler, eps_fn, z_1, num_steps) / ALPHA_0
        return float(jnp.max(jnp.abs(z_1 - exact_z_1))), float(jnp.max(jnp.abs(back - x)))

    inversion, ddim = zip(*(round_trip(samplers.ddim, n) for n in (10, 20, 40, 80)))
    assert all(b < 0.6 * a for a, b in zip(ddim[:-1], ddim[1:])), ddim
    assert all(b < 0.6 * a for a, b in zip(inversion[:-1], inversion[1:])), inversion
    assert ddim[-1] < 0.05 and inversion[-1] < 0.15, (ddim, inversion)  # 0.039, 0.098
    assert round_trip(samplers.dpm_solver_2m, 25)[1] < 1e-3


@pytest.mark.parametrize("sampler", [samplers.ddim, samplers.dpm_solver_2m])
def test_clipping_keeps_the_prediction_in_range(sampler):
    eps_fn = gaussian_eps(jnp.array([3.0, -2.0]), jnp.array([0.1, 0.1]))  # data off [-1, 1]
    free = run(sampler, eps_fn, Z_1, 10) / ALPHA_0
    clipped = run(sampler, eps_fn, Z_1, 10, clip=True) / ALPHA_0
    assert float(jnp.min(jnp.abs(free))) > 1.5
    assert float(jnp.max(jnp.abs(clipped))) < 1.01


def test_ddim_step_at_eta_one_is_the_ancestral_step(uncond):
    config, variables = uncond
    variables = active(variables, 3)  # a score network whose output is not zero
    z_t = jax.random.normal(KEY, (2,) + IMAGE_SHAPE)
    rng = jax.random.PRNGKey(5)

    @functools.partial(jax.jit, static_argnames="clip")
    def both_steps(i, clip):
        model = VDMVAE(dataclasses.replace(config, clip_samples=clip))
        ancestral = model.apply(variables, i, 4, z_t, None, rng, method=VDMVAE.reverse_step)
        g_t, g_s = (model.apply(variables, t, method=VDMVAE.gamma_scalar)
                    for t in ((4 - i) / 4, (3 - i) / 4))
        eps = model.apply(variables, z_t, jnp.full((2,), g_t), None, method=VDMVAE.score)
        ddim = samplers.ddim_step(z_t, eps, g_t, g_s, clip=clip, eta=1.0,
                                  noise=jax.random.normal(rng, z_t.shape))
        return ddim, ancestral

    for clip in (False, True):
        for i in (1, 3):
            np.testing.assert_allclose(*both_steps(i, clip), atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------ log-SNR grid


@pytest.mark.parametrize("gamma_type", ["fixed", "learnable_scalar", "learnable_nnet"])
def test_logsnr_times_are_uniform_in_log_snr(gamma_type):
    config = tiny_config(gamma_type=gamma_type)
    schedule = make_schedule(config)
    params = schedule.init(KEY, jnp.zeros((1,)))
    if gamma_type == "learnable_scalar":
        params = {"params": {"w": jnp.array([-20.0]), "b": jnp.array([-12.0])}}  # |w| is used
    if gamma_type == "learnable_nnet":  # a curved gamma(t): sharper sigmoids, larger weight
        params = active(params, 1, scale=1.0)
        params["params"]["l2"]["kernel"] *= 5.0
        params["params"]["l3"]["kernel"] *= 30.0

    def gamma_fn(t):
        return jnp.reshape(schedule.apply(params, t), t.shape)

    times = jax.jit(samplers.logsnr_times, static_argnums=(0, 1))(gamma_fn, 12)
    gammas = gamma_fn(times)
    assert times.shape == (13,) and float(times[0]) == 1.0 and float(times[-1]) == 0.0
    assert np.all(np.diff(np.asarray(times)) < 0)
    steps = np.diff(np.asarray(gammas))
    np.testing.assert_allclose(steps, steps.mean(), atol=1e-4 * abs(steps.mean()) + 1e-5)
    if gamma_type == "learnable_nnet":
        assert np.ptp(np.diff(np.asarray(times))) > 0.02  # not uniform in t


# --------------------------------------------------------------- the public API


@pytest.mark.parametrize("setup", ["uncond", "cond"])
def test_deterministic_samplers_depend_only_on_z_1_and_w(setup, request):
    config, variables = request.getfixturevalue(setup)
    variables = active(variables, 4)
    w = jax.random.normal(KEY, (2, W_DIM)) if config.conditional else None
    z_1 = jax.random.normal(jax.random.PRNGKey(8), (2,) + IMAGE_SHAPE)
    for name in ("ddim", "dpm_solver"):
        def run_api(seed, name=name, **kw):
            return np.asarray(sample(variables, w, config=config, rng=jax.random.PRNGKey(seed),
                                     num_steps=3, num_samples=2, sampler=name, **kw))

        first = run_api(0, z_1=z_1)
        assert first.dtype == np.uint8 and first.shape == (2,) + IMAGE_SHAPE
        np.testing.assert_array_equal(run_api(1, z_1=z_1), first)  # rng unused given z_1 and w
        drawn = jax.random.normal(jax.random.split(jax.random.PRNGKey(2), 3)[0], z_1.shape)
        np.testing.assert_array_equal(run_api(2), run_api(0, z_1=drawn))  # ancestral's z_1


@pytest.mark.parametrize("setup", ["uncond", "cond"])
def test_ancestral_images_are_unchanged(setup, request):
    config, variables = request.getfixturevalue(setup)
    variables = active(variables, 5)
    rng = jax.random.PRNGKey(9)
    default = np.asarray(sample(variables, config=config, rng=rng, num_steps=3, num_samples=2))
    named = sample(variables, config=config, rng=rng, num_steps=3, num_samples=2,
                   sampler="ancestral")
    np.testing.assert_array_equal(named, default)
    rng_z, rng_steps, rng_x = jax.random.split(rng, 3)
    w = (draw_prior_w(variables, config, 2, jax.random.fold_in(rng, 7))
         if config.conditional else None)
    z = jax.random.normal(rng_z, (2,) + IMAGE_SHAPE)
    z = reverse_steps(variables, z, w, rng_steps, config=config, num_steps=3, start=0, stop=3)
    np.testing.assert_array_equal(decode_z0(variables, z, rng_x, config=config), default)


@pytest.mark.parametrize("setup", ["uncond", "cond"])
def test_encode_to_noise_and_back_is_finite_and_shaped(setup, request):
    config, variables = request.getfixturevalue(setup)
    variables = active(variables, 6)
    images = random_images(3, 2)
    w = encode(variables, images, config=config)[0] if config.conditional else None
    z_1 = encode_to_noise(variables, images, w, config=config, num_steps=3)
    assert z_1.shape == (2,) + IMAGE_SHAPE and bool(jnp.all(jnp.isfinite(z_1)))
    np.testing.assert_array_equal(encode_to_noise(variables, images, w, config=config,
                                                  num_steps=3), z_1)
    back = np.asarray(decode_from_noise(variables, z_1, w, config=config, num_steps=3))
    assert back.dtype == np.uint8 and back.shape == images.shape
    np.testing.assert_array_equal(back, sample(variables, w, config=config, rng=KEY, num_steps=3,
                                               sampler="ddim", z_1=z_1))


# -------------------------------------------------------------------- bad input


def _sample(**kw):
    return lambda config, v: sample(v, **{"config": config, "rng": KEY, "num_steps": 2,
                                          "num_samples": 2, **kw})


def _to_noise(**kw):
    return lambda config, v: encode_to_noise(v, **{"images": random_images(0, 2), "config": config,
                                                   "num_steps": 2, **kw})


def _from_noise(**kw):
    z_1 = np.zeros((2,) + IMAGE_SHAPE, np.float32)
    return lambda config, v: decode_from_noise(v, **{"z_1": z_1, "config": config,
                                                     "num_steps": 2, **kw})


TIME_CONDITIONED = tiny_config("conv_time")


@pytest.mark.parametrize("call, config, expected", [
    (_sample(num_steps=0), None, ["num_steps=0", "positive int"]),
    (_sample(num_steps=2.5), None, ["num_steps=2.5", "positive int"]),
    (_sample(num_steps=True), None, ["num_steps=True"]),
    (_sample(sampler="euler"), None, ["sampler='euler'", "'dpm_solver'"]),
    (_sample(sampler="ddim", eta=-0.1), None, ["eta=-0.1", "[0, 1]"]),
    (_sample(sampler="dpm_solver", eta=0.5), None, ["eta=0.5", "sampler='dpm_solver'"]),
    (_sample(eta=0.5), None, ["eta=0.5", "sampler='ancestral'"]),
    (_sample(sampler="ddim", images=random_images(0, 2)), None, ["images=", "'ancestral'"]),
    (_sample(num_samples=0), None, ["num_samples=0", "positive int"]),
    (_sample(num_samples=-1), None, ["num_samples=-1"]),
    (_sample(num_samples=3, w=np.zeros((2, W_DIM))), None, ["num_samples=3", "w's batch, 2"]),
    (_sample(num_samples=None, w=np.zeros((0, W_DIM))), None, ["w has batch 0"]),
    (_sample(num_samples=None, images=random_images(0, 0)), None, ["images has batch 0"]),
    (_sample(sampler="ddim", z_1=np.zeros((2, 8, 8))), None, ["z_1 has shape (2, 8, 8)"]),
    (_sample(sampler="ddim", z_1=np.zeros((3,) + IMAGE_SHAPE)), None, ["z_1 has batch 3"]),
    (_to_noise(num_steps=2.5), None, ["num_steps=2.5"]),
    (_to_noise(sampler="ancestral"), None, ["sampler='ancestral'", "'ddim'"]),
    (_to_noise(images=random_images(0, 0)), None, ["images has batch 0"]),
    (_to_noise(), TIME_CONDITIONED, ["config.encoder.kind='conv_time'", "encode_to_noise"]),
    (_from_noise(), TIME_CONDITIONED, ["config.encoder.kind='conv_time'"]),
    (_from_noise(sampler="ancestral"), None, ["sampler='ancestral'"]),
    (_from_noise(num_steps=0), None, ["num_steps=0"]),
    (_from_noise(z_1=np.zeros((0,) + IMAGE_SHAPE)), None, ["z_1 has batch 0"]),
    (_from_noise(w=np.zeros((3, W_DIM))), None, ["w has batch 3", "expected 2"]),
    # An empty batch, a negative count, a count that disagrees with w, past `sample` too.
    (_sample(num_samples=-2), None, ["num_samples=-2", "positive int"]),
    (_sample(num_samples=7, w=np.zeros((4, W_DIM))), None, ["num_samples=7", "w's batch, 4"]),
    (lambda c, v: encode(v, random_images(0, 0), config=c), None, ["images has batch 0"]),
    (lambda c, v: posterior(v, random_images(0, 0), c, 4), None, ["images has batch 0"]),
    (lambda c, v: posterior(v, random_images(0, 2), c, 0), None, ["batch_size=0"]),
    (lambda c, v: draw_prior_w(v, c, 0, KEY), None, ["num=0", "positive int"]),
    (lambda c, v: draw_prior_w(v, c, -2, KEY), None, ["num=-2"]),
    (lambda c, v: draw_prior_w(v, c, 2.5, KEY), None, ["num=2.5"]),
])
def test_bad_input_is_one_line_naming_the_argument(cond, call, config, expected):
    cond_config, variables = cond
    with pytest.raises(ValueError) as err:
        call(config or cond_config, variables)
    message = str(err.value)
    assert "\n" not in message and all(s in message for s in expected), message


def test_uncond_batch_zero_is_a_value_error(uncond):
    config, variables = uncond
    for kw in ({"num_samples": 0}, {"z_1": np.zeros((0,) + IMAGE_SHAPE), "sampler": "ddim"}):
        with pytest.raises(ValueError, match="num_samples=0|z_1 has batch 0"):
            sample(variables, config=config, rng=KEY, num_steps=2, **kw)
