"""Few-step samplers of the VDM as pure functions: DDIM and DPM-Solver++(2M).

Notation of Kingma et al. (2021): gamma_t = -log SNR(t), increasing in t, with t = 1 noise and
t = 0 data; alpha_t^2 = sigmoid(-gamma_t), sigma_t^2 = sigmoid(gamma_t), z_t = alpha_t x +
sigma_t eps. Lu et al. (2022) write lambda_t = log(alpha_t / sigma_t) = -gamma_t / 2, half the
log-SNR; the formulas below use their lambda.

The samplers take the denoiser as `eps_fn(z, gamma) -> eps_hat` (z [B,...], gamma a 0-d array,
eps_hat the shape of z) and a grid `gammas` [N+1] of gamma at the times the solver visits:
from gamma(1) to gamma(0) to sample, reversed to integrate the same ODE from data to noise.
Each of the N steps evaluates eps_fn once, so N is the number of function evaluations (NFE).
"""

from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
BISECTION_STEPS = 40  # halves [0, 1] past float32's resolution


def alpha_sigma(gamma: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """(alpha, sigma) = (sqrt(sigmoid(-gamma)), sqrt(sigmoid(gamma))), each the shape of gamma."""
    return jnp.sqrt(jax.nn.sigmoid(-gamma)), jnp.sqrt(jax.nn.sigmoid(gamma))


def logsnr_times(gamma_fn: Callable[[jax.Array], jax.Array], num_steps: int,
                 iterations: int = BISECTION_STEPS) -> jax.Array:
    """num_steps + 1 times from 1 to 0, uniform in log-SNR lambda = -gamma (Lu et al. 2022a,
    Sec. 3.3, recommend uniform lambda steps).

    Each time solves gamma(t) = gamma(1) + (gamma(0) - gamma(1)) k / num_steps by bisection on
    [0, 1], a fixed number of halvings, so that it needs only a monotone gamma (any of the three
    schedules, learned ones included) and stays jittable.

    Args:
      gamma_fn: t [K] -> gamma [K], increasing in t.
      num_steps: N, a Python int.
      iterations: halvings of the bracket.
    Returns:
      t [N+1], t[0] = 1, t[N] = 0, decreasing.
    """
    gamma_1 = gamma_fn(jnp.ones((1,)))[0]
    gamma_0 = gamma_fn(jnp.zeros((1,)))[0]
    target = gamma_1 + (gamma_0 - gamma_1) * jnp.arange(num_steps + 1) / num_steps  # [N+1]

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = gamma_fn(mid) < target  # gamma increasing: the root lies above mid
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, halve,
                               (jnp.zeros_like(target), jnp.ones_like(target)))
    return (0.5 * (lo + hi)).at[0].set(1.0).at[-1].set(0.0)


def predict_x(z: jax.Array, eps_hat: jax.Array, gamma: jax.Array,
              clip: bool) -> Tuple[jax.Array, jax.Array]:
    """x_hat = (z - sigma eps_hat) / alpha, and the eps consistent with it.

    With `clip` (config.clip_samples) x_hat is clipped to [-1, 1] and eps re-derived from it,
    eps = (z - alpha x_hat) / sigma, as `VDMVAE.reverse_step` does.
    Shapes: z, eps_hat [B,...]; gamma 0-d. Returns (x_hat, eps), each [B,...].
    """
    alpha, sigma = alpha_sigma(gamma)
    x_hat = (z - sigma * eps_hat) / alpha
    if not clip:
        return x_hat, eps_hat
    x_hat = jnp.clip(x_hat, -1.0, 1.0)
    return x_hat, (z - alpha * x_hat) / sigma


def ddim_step(z_t: jax.Array, eps_hat: jax.Array, gamma_t: jax.Array, gamma_s: jax.Array, *,
              clip: bool = False, eta: float = 0.0,
              noise: Optional[jax.Array] = None) -> jax.Array:
    """One DDIM step z_t -> z_s (Song et al. 2021), s < t to sample, s > t to invert (eta = 0).

    Eq. (12) of Song et al.: z_s = alpha_s x_hat + sqrt(sigma_s^2 - sigma_eta^2) eps_hat
    + sigma_eta noise, with their Eq. (16) in VDM terms,
      sigma_eta^2 = eta^2 sigma_s^2 (1 - SNR_t / SNR_s) = eta^2 sigma_s^2 (1 - e^(g_s - g_t)),
    eta^2 times the variance of the ancestral step. eta = 0 is the deterministic DDIM, the
    first-order solver of the probability-flow ODE; eta = 1 is the ancestral step.

    Args:
      z_t: [B,...].
      eps_hat: [B,...] eps_fn(z_t, gamma_t).
      gamma_t, gamma_s: 0-d.
      clip: clip x_hat to [-1, 1] (config.clip_samples).
      eta: in [0, 1]; a Python float.
      noise: [B,...] N(0, I), required when eta > 0.
    Returns:
      z_s [B,...].
    """
    alpha_s, sigma_s = alpha_sigma(gamma_s)
    x_hat, eps_hat = predict_x(z_t, eps_hat, gamma_t, clip)
    if eta == 0.0:
        return alpha_s * x_hat + sigma_s * eps_hat
    var_eta = eta ** 2 * sigma_s ** 2 * -jnp.expm1(gamma_s - gamma_t)
    return (alpha_s * x_hat + jnp.sqrt(sigma_s ** 2 - var_eta) * eps_hat
            + jnp.sqrt(var_eta) * noise)


def ddim(eps_fn: EpsFn, z: jax.Array, gammas: jax.Array, *, clip: bool = False,
         eta: float = 0.0, rng: Optional[jax.Array] = None) -> jax.Array:
    """N DDIM steps along `gammas` [N+1] in one fori_loop: z [B,...] at gammas[0] -> [B,...] at
    gammas[N]. With eta > 0 step i draws its noise from fold_in(rng, i)."""

    def step(i, z_t):
        noise = None if eta == 0.0 else jax.random.normal(jax.random.fold_in(rng, i), z_t.shape)
        return ddim_step(z_t, eps_fn(z_t, gammas[i]), gammas[i], gammas[i + 1], clip=clip,
                         eta=eta, noise=noise)

    return jax.lax.fori_loop(0, gammas.shape[0] - 1, step, z)


def dpm_solver_2m_step(z_t: jax.Array, x_t: jax.Array, x_prev: jax.Array, gamma_prev: jax.Array,
                       gamma_t: jax.Array, gamma_s: jax.Array,
                       first_order: jax.Array) -> jax.Array:
    """One DPM-Solver++(2M) step z_t -> z_s (Lu et al. 2022b, Algorithm 2).

    The probability-flow ODE solved exactly in its linear part, with the data prediction
    x_hat(z_lambda, lambda) under the integral (Lu et al. 2022b, Sec. 4):
      z_s = (sigma_s / sigma_t) z_t + sigma_s int_{lambda_t}^{lambda_s} e^lambda x_hat d lambda.
    Taking x_hat constant over the step gives the first-order update (DDIM),
      z_s = (sigma_s / sigma_t) z_t - alpha_s (e^{-h} - 1) x_t,   h = lambda_s - lambda_t;
    the multistep second-order update replaces x_t by a linear extrapolation in lambda through the
    previous step's prediction x_prev (at lambda_prev, h_prev = lambda_t - lambda_prev):
      D = (1 + 1 / (2 r)) x_t - (1 / (2 r)) x_prev,   r = h_prev / h.
    Here lambda = -gamma / 2, so h = (gamma_t - gamma_s) / 2 and e^{-h} - 1 = expm1(-h).

    Args:
      z_t: [B,...].
      x_t: [B,...] x_hat at (z_t, gamma_t).
      x_prev: [B,...] x_hat of the previous step (any value when first_order).
      gamma_prev, gamma_t, gamma_s: 0-d, the previous, current and next grid points.
      first_order: bool 0-d, the first step (no x_prev yet) or a final first-order step.
    Returns:
      z_s [B,...].
    """
    _, sigma_t = alpha_sigma(gamma_t)
    alpha_s, sigma_s = alpha_sigma(gamma_s)
    h = 0.5 * (gamma_t - gamma_s)
    h_prev = jnp.where(first_order, h, 0.5 * (gamma_prev - gamma_t))
    slope = jnp.where(first_order, 0.0, 0.5 * h / h_prev)  # 1 / (2 r)
    d = x_t + slope * (x_t - x_prev)  # (1 + 1/(2r)) x_t - (1/(2r)) x_prev
    return sigma_s / sigma_t * z_t - alpha_s * jnp.expm1(-h) * d


def dpm_solver_2m(eps_fn: EpsFn, z: jax.Array, gammas: jax.Array, *, clip: bool = False,
                  final_first_order: bool = False) -> jax.Array:
    """N DPM-Solver++(2M) steps along `gammas` [N+1] in one fori_loop: z [B,...] at gammas[0] ->
    [B,...] at gammas[N]. The first step is first order; the last too if final_first_order
    (Lu et al.'s advice for fewer than about 15 steps). `clip` clips each x prediction to [-1, 1]
    (config.clip_samples), the thresholding that Lu et al. pair with the data prediction."""
    num_steps = gammas.shape[0] - 1

    def step(i, carry):
        z_t, x_prev = carry
        g_t = gammas[i]
        x_t, _ = predict_x(z_t, eps_fn(z_t, g_t), g_t, clip)
        first = (i == 0) | (final_first_order & (i == num_steps - 1))
        z_s = dpm_solver_2m_step(z_t, x_t, x_prev, gammas[jnp.maximum(i - 1, 0)], g_t,
                                 gammas[i + 1], first)
        return z_s, x_t

    z, _ = jax.lax.fori_loop(0, num_steps, step, (z, jnp.zeros_like(z)))
    return z
