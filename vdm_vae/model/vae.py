"""The VAE whose decoder is a conditional VDM: per-example loss terms and reverse steps."""

import functools
from typing import Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from vdm_vae.model import diffusion, mixture_prior, objective, w_vdm
from vdm_vae.model.config import ModelConfig
from vdm_vae.model.encoder import Encoder
from vdm_vae.model.schedules import make_schedule
from vdm_vae.model.unet import ScoreUNet
from vdm_vae.model.unet_multires import MultiResScoreUNet


@flax.struct.dataclass
class VAEOutput:
    """Per-example loss terms, in nats, all at weight 1 (the bound's own terms)."""

    loss_recon: jax.Array  # [B] -log p(x|z_0)
    loss_klz: jax.Array  # [B] KL(q(z_1|x) || N(0, I))
    loss_diff: jax.Array  # [B] diffusion loss given w
    kl_w: jax.Array  # [B] KL(q(w|x) || p(w)): closed form for N(0, I), else a one-draw estimate
    # (with the w-space VDM prior, of an upper bound on it)
    kl_w_per_dim: jax.Array  # [B, w_dim] KL(q(w|x) || N(0, I)) per dimension; [B, 0] without an
    # encoder or with a learned prior (whose KL has no per-dimension form)
    mmd_w: jax.Array  # [] MMD^2 of the batch of w against N(0, I) (0 unless weighted)
    t: jax.Array  # [B] diffusion times used
    gamma_0: jax.Array  # []
    gamma_1: jax.Array  # []
    kl_w_fit: Optional[jax.Array] = None  # [B] with the w-space VDM prior: kl_w's value, its
    # gradient reaching only the prior's parameters (the objective fits the prior with it)

    @property
    def total(self) -> jax.Array:
        """[B] the full negative ELBO in nats."""
        return self.loss_recon + self.loss_klz + self.loss_diff + self.kl_w


class VDMVAE(nn.Module):
    """x -> q(w|x) -> w; z_t ~ q(z_t|x); eps_hat(z_t, w; gamma_t). Unconditional if no encoder.

    Submodules `score_model` and `gamma` carry google-research/vdm's names, so an
    unconditional parameter tree of the original loads unchanged; `encoder` is added when
    config.encoder.kind != "none", `w_prior` with a mixture prior learned with the model
    (config.w_prior_components > 0) and `w_prior_vdm` with a w-space VDM prior learned with it
    (config.w_prior_vdm). With more than one entry in config.sm_ch_mult the score model is the
    multi-resolution U-Net instead of the original's.
    """

    config: ModelConfig

    def setup(self):
        unet = MultiResScoreUNet if len(self.config.sm_ch_mult) > 1 else ScoreUNet
        self.score_model = unet(self.config)
        self.gamma = make_schedule(self.config)
        if self.config.conditional:
            self.encoder = Encoder(self.config.encoder, self.config.attention_impl)
        if self.config.w_prior_components:
            self.w_prior = mixture_prior.MixturePrior(self.config.w_prior_components,
                                                      self.config.w_dim)
        if self.config.w_prior_vdm:
            self.w_prior_vdm = w_vdm.WScoreNet(joint_prior_config(self.config))

    def gamma_scalar(self, t: float) -> jax.Array:
        """gamma(t) as a 0-d array."""
        return jnp.reshape(self.gamma(jnp.asarray(t, jnp.float32)), ())

    def encode(self, images: jax.Array, t: Optional[jax.Array] = None
               ) -> Tuple[jax.Array, jax.Array]:
        """q(w|x) of uint8 images [B,H,W,C]: (mean, logvar), each [B,w_dim]."""
        f = diffusion.pixels_to_unit(images, self.config.vocab_size)
        return self.encoder(f, t)

    def score(self, z: jax.Array, g_t: jax.Array, w: Optional[jax.Array],
              deterministic: bool = True) -> jax.Array:
        """eps_hat [B,H,W,C] given z [B,H,W,C], gamma [B] and w [B,D] (None if unconditional)."""
        cond = jnp.zeros((z.shape[0], 1), jnp.float32) if w is None else w
        return self.score_model(z, g_t, cond, deterministic)

    def sample_prior_w(self, rng: jax.Array, num: int) -> jax.Array:
        """num draws of w from the model's prior p(w): [num, w_dim]."""
        if self.config.w_prior_components:
            return self.w_prior.sample(rng, num)
        if self.config.w_prior_vdm:
            return w_vdm.sample_w(self.w_prior_vdm.variables["params"], rng,
                                  config=joint_prior_config(self.config), num=num)
        return jax.random.normal(rng, (num, self.config.w_dim))

    def __call__(self, images: jax.Array, deterministic: bool = True,
                 t: Optional[jax.Array] = None, w: Optional[jax.Array] = None,
                 example_ids: Optional[jax.Array] = None, eps_0: Optional[jax.Array] = None,
                 eps: Optional[jax.Array] = None) -> VAEOutput:
        """Loss terms for uint8 images [B,H,W,C].

        Args:
          images: [B,H,W,C] integer pixels.
          deterministic: disables dropout.
          t: optional [B] times (default: sampled, antithetic if configured).
          w: optional [B,w_dim] code to condition on instead of a draw from q(w|x)
            (the KL is still that of q(w|x), estimated from its own draw under a learned
            prior); used to measure how much the decoder uses w.
          example_ids: optional [B] global indices of the examples; the noise of example i is
            then drawn from a key folded with i, so a batch split over devices sees the same
            noise as on one device.
        """
        c = self.config
        g_0, g_1 = self.gamma_scalar(0.0), self.gamma_scalar(1.0)
        var_1 = nn.sigmoid(g_1)
        f = diffusion.pixels_to_unit(images, c.vocab_size)
        batch = images.shape[0]

        if eps_0 is None:
            eps_0 = _normal(self.make_rng("sample"), f.shape, example_ids)
        loss_recon = diffusion.reconstruction_loss(
            images, f + jnp.exp(0.5 * g_0) * eps_0, g_0, c.vocab_size)
        loss_klz = diffusion.prior_loss(f, var_1)

        if t is None:
            t = diffusion.sample_times(self.make_rng("sample"), batch, c.antithetic_time_sampling)
        t_w = t  # the w-space VDM's time: uniform per example, continuous even where t is not
        if c.sm_n_timesteps > 0:
            t = jnp.ceil(t * c.sm_n_timesteps) / c.sm_n_timesteps

        # eps is drawn before w's noise: a run with an encoder and one without, given the same
        # key, see the same eps_0, t and eps (their bounds are paired).
        if eps is None:
            eps = _normal(self.make_rng("sample"), f.shape, example_ids)

        kl_w_per_dim = jnp.zeros((batch, 0), jnp.float32)
        kl_w = jnp.zeros((batch,), jnp.float32)
        kl_w_fit = None
        with_mmd = c.conditional and w is None and c.loss.mmd_weight > 0
        if c.conditional:
            mean, logvar = self.encoder(f, t if c.encoder.time_conditioned else None)
            if not c.learned_w_prior:  # p(w) = N(0, I): the KL in closed form
                kl_w_per_dim = diffusion.gaussian_kl(mean, logvar)
                kl_w = jnp.sum(kl_w_per_dim, axis=-1)
            if w is None or c.learned_w_prior:
                eps_w = _normal(self.make_rng("sample"), mean.shape, example_ids)
                w_q = mean + jnp.exp(0.5 * logvar) * eps_w
                w = w_q if w is None else w
                if c.w_prior_components:
                    kl_w = mixture_prior.kl_estimate(self.w_prior(w_q), logvar)
                elif c.w_prior_vdm:
                    eps_p = _normal(self.make_rng("sample"), mean.shape, example_ids)
                    kl_w, kl_w_fit = self.joint_prior_kl(w_q, logvar, t_w, eps_p)

        g_t = self.gamma(t)
        var_t = nn.sigmoid(g_t)[:, None, None, None]
        # The MMD's prior draw comes last, so the weights leave the bound's noise unchanged.
        mmd_w = jnp.zeros((), jnp.float32)
        if with_mmd:
            mmd_w = objective.mmd_to_standard_normal(self.make_rng("sample"), w)
        z_t = jnp.sqrt(1.0 - var_t) * f + jnp.sqrt(var_t) * eps
        eps_hat = self.score(z_t, g_t, w, deterministic)
        mse = jnp.sum(jnp.square(eps - eps_hat), axis=(1, 2, 3))

        if c.sm_n_timesteps == 0:
            _, g_t_grad = jax.jvp(self.gamma, (t,), (jnp.ones_like(t),))
            loss_diff = diffusion.diffusion_loss_continuous(g_t_grad, mse)
        else:
            g_s = self.gamma(t - 1.0 / c.sm_n_timesteps)
            loss_diff = diffusion.diffusion_loss_discrete(g_t, g_s, mse, c.sm_n_timesteps)

        return VAEOutput(loss_recon=loss_recon, loss_klz=loss_klz, loss_diff=loss_diff,
                         kl_w=kl_w, kl_w_per_dim=kl_w_per_dim, mmd_w=mmd_w, t=t,
                         gamma_0=g_0, gamma_1=g_1, kl_w_fit=kl_w_fit)

    def joint_prior_kl(self, w_q: jax.Array, logvar: jax.Array, t: jax.Array,
                       eps: jax.Array) -> Tuple[jax.Array, jax.Array]:
        """One-draw upper bound on KL(q(w|x) || p_psi) under the w-space VDM prior.

        Args:
          w_q: [B,D] the decoder's draw of w ~ q(w|x) (reparameterised: the encoder's gradient
            flows through it).
          logvar: [B,D] q's log-variance.
          t: [B] the w-VDM's diffusion times, each uniform on [0, 1].
          eps: [B,D] the noise of its z_t.
        Returns:
          (kl, kl_fit), each [B] and equal in value: the prior's negative ELBO at w_q minus the
          exact entropy of q(w|x); kl's gradient reaches encoder and prior, kl_fit's the prior.
        """
        cfg = joint_prior_config(self.config)
        entropy = diffusion.gaussian_entropy(logvar)
        bound = w_vdm.neg_elbo_terms(self.w_prior_vdm, w_q, t, eps, cfg)
        fit = w_vdm.neg_elbo_terms(self.w_prior_vdm, jax.lax.stop_gradient(w_q), t, eps, cfg)
        return bound - entropy, fit - jax.lax.stop_gradient(entropy)

    def reverse_step(self, i: jax.Array, num_steps: int, z_t: jax.Array,
                     w: Optional[jax.Array], rng: jax.Array,
                     images: Optional[jax.Array] = None) -> jax.Array:
        """One ancestral step z_t -> z_s of p(z_s|z_t, w), t = (T-i)/T, s = (T-i-1)/T.

        Args:
          i: step index in [0, T).
          num_steps: T.
          z_t: [B,H,W,C].
          w: [B,D] or None.
          rng: key for this step's noise.
          images: for a time-conditioned encoder, guide images whose code at t is used as w.
        """
        t = (num_steps - i) / num_steps
        s = (num_steps - i - 1) / num_steps
        g_s, g_t = self.gamma_scalar(s), self.gamma_scalar(t)
        if images is not None:
            w = self.encode(images, jnp.full((z_t.shape[0],), t))[0]
        eps_hat = self.score(z_t, jnp.full((z_t.shape[0],), g_t), w)
        alpha_t, alpha_s = jnp.sqrt(nn.sigmoid(-g_t)), jnp.sqrt(nn.sigmoid(-g_s))
        sigma_t, sigma_s = jnp.sqrt(nn.sigmoid(g_t)), jnp.sqrt(nn.sigmoid(g_s))
        c = -jnp.expm1(g_s - g_t)
        if self.config.clip_samples:
            x_start = jnp.clip((z_t - sigma_t * eps_hat) / alpha_t, -1.0, 1.0)
            mean = alpha_s * (z_t * (1.0 - c) / alpha_t + c * x_start)
        else:
            mean = alpha_s / alpha_t * (z_t - sigma_t * c * eps_hat)
        noise = jax.random.normal(rng, z_t.shape)
        return mean + sigma_s * jnp.sqrt(c) * noise

    def generate_x(self, z_0: jax.Array, rng: Optional[jax.Array] = None) -> jax.Array:
        """Decodes z_0 [B,H,W,C] to int32 pixels: argmax, or categorical if sample_softmax."""
        g_0 = self.gamma_scalar(0.0)
        z_rescaled = z_0 / jnp.sqrt(1.0 - nn.sigmoid(g_0))
        logits = diffusion.decoder_logits(z_rescaled, g_0, self.config.vocab_size)
        if self.config.sample_softmax:
            return jax.random.categorical(rng, logits)
        return jnp.argmax(logits, axis=-1)


def _normal(rng: jax.Array, shape, example_ids: Optional[jax.Array]) -> jax.Array:
    """N(0, I) of `shape`; per-example keys fold_in(rng, id) when example_ids [B] is given."""
    if example_ids is None:
        return jax.random.normal(rng, shape)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), shape[1:]))(example_ids)


def joint_prior_config(config: ModelConfig) -> w_vdm.PriorConfig:
    """The w-space VDM of a model with config.w_prior_vdm: the fitted prior's, on a normal base
    (it starts as N(0, I), the default prior, and learns a correction to it)."""
    return w_vdm.PriorConfig(w_dim=config.w_dim, hidden=config.w_prior_vdm_hidden,
                             normal_base=True)


def init_params(config: ModelConfig, rng: jax.Array, batch: int = 2) -> dict:
    """Initial variables {'params': ...} for `config`."""
    images = jnp.zeros((batch,) + tuple(config.image_shape), jnp.uint8)
    rng_params, rng_sample = jax.random.split(rng)
    return _jitted_init(config)({"params": rng_params, "sample": rng_sample}, images)


@functools.lru_cache(maxsize=None)
def _jitted_init(config: ModelConfig):
    return jax.jit(VDMVAE(config).init)
