"""Public sampling and encoding: one jitted fori_loop over the reverse steps.

The ancestral sampler runs `VDMVAE.reverse_step`; DDIM and DPM-Solver++(2M) solve the
probability-flow ODE (vdm_vae/model/samplers.py), which also maps images to noise and back.
"""

import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.model import diffusion, samplers
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.vae import VDMVAE
from vdm_vae.runtime.progress import Progress


def as_variables(params) -> dict:
    """Accepts {'params': tree} (as from `init`) or the bare tree."""
    if isinstance(params, dict) and set(params) == {"params"}:
        return params
    return {"params": params}


def check_images(images, config: ModelConfig, name: str = "images") -> jax.Array:
    """Validates integer images [B,H,W,C] against the config; raises ValueError otherwise."""
    dtype = getattr(images, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer (uint8) array of pixels in "
                         f"[0, {config.vocab_size - 1}], got dtype {dtype}.")
    if images.ndim != 4:
        raise ValueError(f"{name} must have rank 4 [B,H,W,C], got shape {tuple(images.shape)}.")
    if tuple(images.shape[1:]) != tuple(config.image_shape):
        raise ValueError(f"{name} has per-image shape {tuple(images.shape[1:])}, but the model "
                         f"expects (H, W, C) = {tuple(config.image_shape)}.")
    if not isinstance(images, jax.core.Tracer) and images.size:
        lo, hi = int(np.min(images)), int(np.max(images))
        if lo < 0 or hi >= config.vocab_size:
            raise ValueError(f"{name} values span [{lo}, {hi}], expected [0, "
                             f"{config.vocab_size - 1}].")
    return jnp.asarray(images)


def check_w(w, config: ModelConfig, batch: Optional[int] = None) -> Optional[jax.Array]:
    """Validates w [B, w_dim] (None for an unconditional model)."""
    if not config.conditional:
        if w is not None:
            raise ValueError("w must be None for an unconditional model (encoder.kind='none'), "
                             f"got shape {tuple(np.shape(w))}.")
        return None
    shape = tuple(np.shape(w)) if w is not None else None
    if shape is None or len(shape) != 2 or shape[1] != config.w_dim:
        raise ValueError(f"w must have shape [B, {config.w_dim}] (w_dim), got {shape}.")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"w has batch {shape[0]}, expected {batch}.")
    if not isinstance(w, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(w))):
        bad = int(np.size(w) - np.sum(np.isfinite(np.asarray(w))))
        raise ValueError(f"w has {bad} non-finite values (NaN or inf): expected finite codes.")
    return jnp.asarray(w, jnp.float32)


@functools.partial(jax.jit, static_argnames=("config", "start", "stop", "num_steps"))
def reverse_steps(params, z: jax.Array, w: Optional[jax.Array], rng: jax.Array, *,
                  config: ModelConfig, num_steps: int, start: int, stop: int,
                  images: Optional[jax.Array] = None) -> jax.Array:
    """Runs reverse steps i in [start, stop) of T = num_steps: z_{t(start)} -> z_{t(stop)}."""
    model = VDMVAE(config)

    def body(i, z_t):
        return model.apply(params, i, num_steps, z_t, w, jax.random.fold_in(rng, i), images,
                           method=VDMVAE.reverse_step)

    return jax.lax.fori_loop(start, stop, body, z)


@functools.partial(jax.jit, static_argnames=("config",))
def decode_z0(params, z_0: jax.Array, rng: jax.Array, *, config: ModelConfig) -> jax.Array:
    """z_0 [B,H,W,C] -> uint8 pixels [B,H,W,C]."""
    x = VDMVAE(config).apply(params, z_0, rng, method=VDMVAE.generate_x)
    return x.astype(jnp.uint8)


SAMPLERS = ("ancestral", "ddim", "dpm_solver")
DETERMINISTIC = ("ddim", "dpm_solver")


def _fail(arg: str, value, accepted: str):
    """One-line ValueError naming the argument, its value and what is accepted."""
    raise ValueError(f"{arg}={value!r} is invalid: expected {accepted}.")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_num_steps(num_steps) -> int:
    """num_steps as an int >= 1; a ValueError otherwise (2.5, 0, True)."""
    if not _is_int(num_steps) or num_steps < 1:
        _fail("num_steps", num_steps, "a positive int (the number of network evaluations)")
    return int(num_steps)


def check_sampler(sampler, eta, accepted=SAMPLERS) -> float:
    """Validates sampler (one of `accepted`) and eta (DDIM's noise, in [0, 1]); returns eta."""
    if not isinstance(sampler, str) or sampler not in accepted:
        _fail("sampler", sampler, f"one of {accepted}")
    if isinstance(eta, (bool, np.bool_)) or not isinstance(eta, (int, float, np.integer,
                                                                 np.floating)):
        _fail("eta", eta, "a float in [0, 1]")
    if not 0.0 <= eta <= 1.0:
        _fail("eta", eta, "a float in [0, 1] (0: deterministic DDIM, 1: DDIM's ancestral noise)")
    if eta != 0.0 and sampler != "ddim":
        _fail("eta", eta, f"0 with sampler={sampler!r} (eta is the noise of sampler='ddim')")
    return float(eta)


def check_num_samples(num_samples) -> int:
    """num_samples as an int >= 1; a ValueError otherwise."""
    if not _is_int(num_samples) or num_samples < 1:
        _fail("num_samples", num_samples, "a positive int (the batch size) or None")
    return int(num_samples)


def batch_of(name: str, array) -> Optional[int]:
    """The leading axis of w, images or z_1 (None for a 0-d value, left to its own check);
    a ValueError if it is 0."""
    if not np.ndim(array):
        return None
    batch = int(np.shape(array)[0])
    if batch < 1:
        raise ValueError(f"{name} has batch 0 (shape {tuple(np.shape(array))}): expected at "
                         "least one example.")
    return batch


def check_z_1(z_1, config: ModelConfig, batch: Optional[int]) -> jax.Array:
    """Validates starting noise z_1 [B,H,W,C] (finite floats) against the config and batch."""
    shape = tuple(np.shape(z_1))
    if len(shape) != 4 or shape[1:] != tuple(config.image_shape):
        raise ValueError(f"z_1 has shape {shape}: expected [B, "
                         f"{', '.join(map(str, config.image_shape))}] (B, config.image_shape).")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"z_1 has batch {shape[0]}: expected {batch}, the batch of w or "
                         "num_samples.")
    z_1 = jnp.asarray(z_1, jnp.float32)
    if not isinstance(z_1, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(z_1))):
        raise ValueError("z_1 has non-finite values (NaN or inf): expected finite noise.")
    return z_1


def _gamma(module: VDMVAE, t: jax.Array) -> jax.Array:
    return module.gamma(t)


@functools.partial(jax.jit, static_argnames=("config", "num_steps", "sampler", "eta", "invert"))
def solver_steps(params, z: jax.Array, w: Optional[jax.Array], rng: jax.Array, *,
                 config: ModelConfig, num_steps: int, sampler: str, eta: float = 0.0,
                 invert: bool = False) -> jax.Array:
    """z_1 [B,H,W,C] -> z_0 by `sampler` ("ddim" or "dpm_solver") in num_steps network
    evaluations at times uniform in log-SNR; z_0 -> z_1 (the same ODE, forward) if `invert`.

    DPM-Solver++(2M) takes its final step at first order below 15 steps, as Lu et al. advise.
    `rng` draws DDIM's noise when eta > 0.
    """
    model = VDMVAE(config)

    def gamma_fn(t):
        return jnp.reshape(model.apply(params, t, method=_gamma), t.shape)

    def eps_fn(z_t, g_t):
        return model.apply(params, z_t, jnp.full((z_t.shape[0],), g_t), w, method=VDMVAE.score)

    gammas = gamma_fn(samplers.logsnr_times(gamma_fn, num_steps))  # [N+1], gamma(1) -> gamma(0)
    if invert:
        gammas = gammas[::-1]
    if sampler == "ddim":
        return samplers.ddim(eps_fn, z, gammas, clip=config.clip_samples, eta=eta, rng=rng)
    return samplers.dpm_solver_2m(eps_fn, z, gammas, clip=config.clip_samples,
                                  final_first_order=num_steps < 15)


def sample(params, w: Optional[jax.Array] = None, *, config: ModelConfig, rng: jax.Array,
           num_steps: int = 250, num_samples: Optional[int] = None,
           images: Optional[jax.Array] = None, fitted_prior=None, sampler: str = "ancestral",
           eta: float = 0.0, z_1: Optional[jax.Array] = None) -> jax.Array:
    """Samples of p(x|w), uint8 [B,H,W,C], by the ancestral sampler or an ODE solver.

    Every sampler starts from z_1 ~ N(0, I) drawn from `rng` (the same draw for all three),
    runs one jitted loop of num_steps network evaluations to z_0 and decodes it to pixels.

    Args:
      params: model parameters (EMA params from `load`, or variables from `init`).
      w: [B, w_dim] codes, e.g. from `encode` for guided generation. None: drawn from the
        model's prior, N(0, I), its learned mixture or its learned w-space VDM (or from
        fitted_prior), for fully generative samples; always None for an unconditional model.
        With w None, give num_samples.
      config: the model's ModelConfig.
      rng: PRNGKey; the same key gives the same images.
      num_steps: T, the number of reverse steps (network evaluations), an int >= 1.
      num_samples: batch size when w is None; if given with w, it must equal w's batch.
      images: guide images for a time-conditioned encoder (w is then recomputed at each t);
        ancestral sampler only.
      fitted_prior: (params, PriorConfig) of a prior fitted after training
        (`vdm_vae.load_fitted_prior`); with w None
        and num_samples set, w is drawn from it instead of N(0, I).
      sampler: "ancestral" (the VDM's p(z_s|z_t), T steps uniform in t), "ddim" (Song et al.
        2021) or "dpm_solver" (DPM-Solver++(2M), Lu et al. 2022); the last two solve the
        probability-flow ODE on steps uniform in log-SNR and are deterministic given z_1 and w.
        "dpm_solver" is second order: 15-25 steps are typically enough.
      eta: DDIM's noise in [0, 1]: 0 deterministic, 1 the ancestral step's variance;
        sampler="ddim" only.
      z_1: optional starting noise [B,H,W,C] instead of the draw from rng.
    """
    num_steps = check_num_steps(num_steps)
    eta = check_sampler(sampler, eta)
    if images is not None and sampler != "ancestral":
        raise ValueError(f"images= (guide images of a time-conditioned encoder) needs "
                         f"sampler='ancestral', got sampler={sampler!r}: give w instead.")
    variables = as_variables(params)
    if num_samples is not None:
        num_samples = check_num_samples(num_samples)
    if images is not None:
        images = check_images(images, config)
        batch = batch_of("images", images)
    elif w is not None:
        batch = batch_of("w", w)
        if num_samples is not None and batch is not None and num_samples != batch:
            _fail("num_samples", num_samples, f"None or w's batch, {batch}")
    elif num_samples is not None:
        batch = num_samples
    elif z_1 is not None:
        batch = batch_of("z_1", z_1)
    else:
        raise ValueError("sample needs w [B, w_dim], num_samples, z_1 [B,H,W,C] or images.")
    if z_1 is not None:
        z_1 = check_z_1(z_1, config, batch)
        batch = z_1.shape[0]
    rng_z, rng_steps, rng_x = jax.random.split(rng, 3)
    if w is None and images is None and config.conditional:
        w = draw_prior_w(variables, config, batch, jax.random.fold_in(rng, 7), fitted_prior)
    w = None if images is not None else check_w(w, config, batch)
    if z_1 is None:
        z = jax.random.normal(rng_z, (batch,) + tuple(config.image_shape))
    else:
        z = z_1
    if sampler == "ancestral":
        z = reverse_steps(variables, z, w, rng_steps, config=config, num_steps=num_steps,
                          start=0, stop=num_steps, images=images)
    else:
        z = solver_steps(variables, z, w, rng_steps, config=config, num_steps=num_steps,
                         sampler=sampler, eta=eta)
    return decode_z0(variables, z, rng_x, config=config)


def _check_ode_model(config: ModelConfig, function: str):
    if config.encoder.time_conditioned:
        _fail("config.encoder.kind", config.encoder.kind,
              f"'none' or 'conv' for {function}: the probability-flow ODE needs a code w that "
              "does not change with t")


@functools.partial(jax.jit, static_argnames=("config",))
def _data_to_z0(params, images: jax.Array, *, config: ModelConfig) -> jax.Array:
    """z_0 = alpha_0 x for uint8 images [B,H,W,C], x = pixels_to_unit(images)."""
    g_0 = VDMVAE(config).apply(params, 0.0, method=VDMVAE.gamma_scalar)
    x = diffusion.pixels_to_unit(images, config.vocab_size)
    return jnp.sqrt(jax.nn.sigmoid(-g_0)) * x


def encode_to_noise(params, images: jax.Array, w: Optional[jax.Array] = None, *,
                    config: ModelConfig, num_steps: int, sampler: str = "ddim") -> jax.Array:
    """DDIM inversion: the probability-flow ODE integrated from z_0 = alpha_0 x to z_1.

    Args:
      params: model parameters.
      images: uint8 [B,H,W,C]; x = pixels_to_unit(images).
      w: [B, w_dim] code of a conditional model (e.g. the mean from `encode`); None without an
        encoder. Not for a time-conditioned encoder.
      config: the model's ModelConfig.
      num_steps: network evaluations, an int >= 1; the error of the round trip with
        `decode_from_noise` shrinks as they grow (first order with "ddim", second with
        "dpm_solver").
      sampler: the solver, "ddim" (default) or "dpm_solver", run forward in time.
    Returns:
      z_1 [B,H,W,C] float32.
    """
    num_steps = check_num_steps(num_steps)
    check_sampler(sampler, 0.0, DETERMINISTIC)
    _check_ode_model(config, "encode_to_noise")
    images = check_images(images, config)
    w = check_w(w, config, batch_of("images", images))
    variables = as_variables(params)
    z_0 = _data_to_z0(variables, images, config=config)
    return solver_steps(variables, z_0, w, jax.random.PRNGKey(0), config=config,
                        num_steps=num_steps, sampler=sampler, invert=True)


def decode_from_noise(params, z_1: jax.Array, w: Optional[jax.Array] = None, *,
                      config: ModelConfig, num_steps: int, sampler: str = "ddim",
                      rng: Optional[jax.Array] = None) -> jax.Array:
    """The inverse of `encode_to_noise`: z_1 [B,H,W,C] -> uint8 images [B,H,W,C] by the
    deterministic `sampler` ("ddim" or "dpm_solver"), given the same w (None without an encoder).

    `rng` is used only to decode z_0 when config.sample_softmax (default PRNGKey(0)).
    """
    num_steps = check_num_steps(num_steps)
    check_sampler(sampler, 0.0, DETERMINISTIC)
    _check_ode_model(config, "decode_from_noise")
    z_1 = check_z_1(z_1, config, batch_of("z_1", z_1))
    w = check_w(w, config, z_1.shape[0])
    variables = as_variables(params)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    z_0 = solver_steps(variables, z_1, w, rng, config=config, num_steps=num_steps,
                       sampler=sampler)
    return decode_z0(variables, z_0, rng, config=config)


def draw_prior_w(params, config: ModelConfig, num: int, rng: jax.Array,
                 fitted_prior=None) -> jax.Array:
    """w [num, w_dim] from the model's prior (N(0, I), its learned mixture or its learned w-space
    VDM, by that VDM's ancestral sampler), or from a prior fitted after training,
    fitted_prior = (params, PriorConfig) (`vdm_vae.load_fitted_prior`)."""
    if not _is_int(num) or num < 1:
        _fail("num", num, "a positive int (the number of codes)")
    num = int(num)
    if fitted_prior is None:
        return _model_prior_w(as_variables(params), rng, config=config, num=num)
    from vdm_vae.evaluation.fitted_prior import sample_w

    prior_params, prior_config = fitted_prior
    if prior_config.w_dim != config.w_dim:
        raise ValueError(f"fitted_prior has w_dim {prior_config.w_dim}, the model {config.w_dim}.")
    return sample_w(prior_params, rng, config=prior_config, num=num)


@functools.partial(jax.jit, static_argnames=("config", "num"))
def _model_prior_w(params, rng: jax.Array, *, config: ModelConfig, num: int) -> jax.Array:
    return VDMVAE(config).apply(params, rng, num, method=VDMVAE.sample_prior_w)


@functools.partial(jax.jit, static_argnames=("config",))
def _encode(params, images, t, *, config: ModelConfig):
    return VDMVAE(config).apply(params, images, t, method=VDMVAE.encode)


def encode(params, images, *, config: ModelConfig, t: Optional[float] = None
           ) -> Tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of q(w|x) for uint8 images [B,H,W,C]: each [B, w_dim].

    `t` in [0, 1] is required by a time-conditioned encoder and ignored otherwise.
    """
    if not config.conditional:
        raise ValueError("encode needs a model with an encoder; config.encoder.kind is 'none'.")
    images = check_images(images, config)
    batch_of("images", images)
    t_arr = None
    if config.encoder.time_conditioned:
        if t is None:
            raise ValueError("encoder.kind='conv_time' needs t in [0, 1], got None.")
        t_arr = jnp.full((images.shape[0],), t, jnp.float32)
    mean, logvar = _encode(as_variables(params), images, t_arr, config=config)
    return mean, jnp.exp(0.5 * logvar)


def posterior(params, images: np.ndarray, config: ModelConfig, batch_size: int,
              desc: Optional[str] = None):
    """(mean, logvar) of q(w|x), each [N, w_dim]; a progress line on stderr if `desc`."""
    if not _is_int(batch_size) or batch_size < 1:
        _fail("batch_size", batch_size, "a positive int")
    batch_of("images", images)
    means, logvars = [], []
    progress = Progress(len(images), desc, "img") if desc else None
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        mean, std = encode(params, batch, config=config)
        means.append(np.asarray(mean))
        logvars.append(2.0 * np.log(np.asarray(std)))
        if progress:
            progress.update(len(batch))
    return np.concatenate(means), np.concatenate(logvars)
