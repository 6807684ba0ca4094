"""Typed, frozen configuration of the model (never a ConfigDict inside a module)."""

import dataclasses
from typing import Any, Mapping, Optional, Tuple

GAMMA_TYPES = ("fixed", "learnable_scalar", "learnable_nnet")
ENCODER_TYPES = ("none", "conv", "conv_time")
ATTENTION_IMPLS = ("auto", "batched", "per_example")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Encoder q(w|x): a port of diffusers' VAE `Encoder` with one down block.

    Attributes:
      kind: "none" (unconditional VDM), "conv" (E(x)) or "conv_time" (E(x, t)).
      block_out_channels: channels of the single block.
      layers_per_block: ResNet blocks in the down block.
      norm_num_groups: GroupNorm groups.
      w_dim: size of w.
      channel_mult: one entry per down block, each block_out_channels * mult channels; the
        resolution halves between blocks, as in diffusers' Encoder. (1,) is the study's.
      out_channels: channels of the map that conv_out gives and a Dense turns into w
        (1 in the study's encoder).
    """

    kind: str = "none"
    block_out_channels: int = 64
    layers_per_block: int = 2
    norm_num_groups: int = 32
    w_dim: int = 128
    channel_mult: Tuple[int, ...] = (1,)
    out_channels: int = 1

    @property
    def single_code(self) -> bool:
        """One code w per image, E(x): what probes, guided samples and w-usage figures need."""
        return self.kind == "conv"

    @property
    def time_conditioned(self) -> bool:
        """The code depends on the diffusion time, E(x, t): the reported bpd is then not a
        bound, and samples need guide images rather than codes."""
        return self.kind == "conv_time"


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the training objective (the reported `bpd` ignores them).

    Attributes:
      beta: weight of KL(q(w|x) || N(0, I)); 1 is the ELBO, 0 an unregularised encoder.
      free_bits: KL floor in nats per dimension of w (0 = off).
      capacity: target KL in nats; the objective uses beta * |KL - capacity| when > 0 (with a
        w-space VDM prior, for the encoder only: the prior minimises the plain KL).
      mmd_weight: weight of an MMD penalty between the aggregate posterior and N(0, I).
    """

    beta: float = 1.0
    free_bits: float = 0.0
    capacity: float = 0.0
    mmd_weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """VDM decoder (field names as google-research/vdm's `VDMConfig`) plus the encoder.

    Attributes:
      image_shape: (H, W, C) of the data.
      sm_norm_groups: GroupNorm groups in the score U-Net (the original hard-codes 32).
      clip_samples: clip the predicted x to [-1, 1] in each reverse step.
      compute_dtype: "float32" or "bfloat16" activations (parameters stay float32).
      attention_impl: how attention is computed, with the same maths and parameters:
        "batched", "per_example" (fast on XLA:CPU), or "auto" (per_example on CPU, batched
        elsewhere); see vdm_vae/cpu/attention.py.
      sm_ch_mult: channel multiplier per resolution level of the score U-Net. (1,) is
        google-research/vdm's U-Net at full resolution (vdm_vae/model/unet.py); more entries give
        the multi-resolution U-Net (vdm_vae/model/unet_multires.py), halving H and W per level.
      w_min_gamma: if set, the score U-Net sees w only where gamma_t >= w_min_gamma (signal-to-
        noise ratio exp(-gamma_t) at most exp(-w_min_gamma)) and zeros in its place elsewhere,
        so w can only help where the noise hides the image's global structure. The decoder
        p(x|w) stays a valid model of x given w: the bound is unchanged in form. None: always.
      w_prior_components: the prior p(w). 0: N(0, I), the KL of w in closed form. K >= 1: a
        mixture of K diagonal Gaussians learned with the model (vdm_vae/model/mixture_prior.py),
        the KL estimated from the decoder's draw of w (exact entropy, sampled cross-entropy).
      w_prior_vdm: the prior p(w) is a small continuous-time VDM on w learned with the model
        (vdm_vae/model/w_vdm.py, the model of the prior fitted after training on a normal base,
        so that it starts as N(0, I); LSGM's latent prior): the KL term is its negative ELBO at
        the decoder's draw of w minus the exact entropy of q(w|x), an upper bound on
        KL(q(w|x) || p(w)) in expectation. Off: N(0, I) or the mixture.
      w_prior_vdm_hidden: width of that VDM's score MLP (3 layers, gamma linear from -10 to 8).
      w_film: w also scales and shifts each score ResNet block's second GroupNorm,
        GN(h) * (1 + s(w)) + b(w), s and b from a zero-initialised Dense of w (Diff-AE's AdaGN);
        in both U-Nets. Off: w reaches the U-Net only through the time embedding.
    """

    image_shape: Tuple[int, int, int] = (28, 28, 1)
    vocab_size: int = 256
    sample_softmax: bool = False
    antithetic_time_sampling: bool = True
    with_fourier_features: bool = True
    with_attention: bool = False
    gamma_type: str = "learnable_scalar"
    gamma_min: float = -13.3
    gamma_max: float = 5.0
    sm_n_timesteps: int = 0
    sm_n_embd: int = 128
    sm_n_layer: int = 32
    sm_pdrop: float = 0.1
    sm_norm_groups: int = 32
    clip_samples: bool = False
    compute_dtype: str = "float32"
    attention_impl: str = "auto"
    sm_ch_mult: Tuple[int, ...] = (1,)
    w_min_gamma: Optional[float] = None
    w_prior_components: int = 0
    w_prior_vdm: bool = False
    w_prior_vdm_hidden: int = 512
    w_film: bool = False
    encoder: EncoderConfig = EncoderConfig()
    loss: LossConfig = LossConfig()

    @property
    def conditional(self) -> bool:
        return self.encoder.kind != "none"

    @property
    def learned_w_prior(self) -> bool:
        """p(w) has parameters of the model (the mixture or the w-space VDM), not N(0, I)."""
        return bool(self.w_prior_components) or self.w_prior_vdm

    @property
    def w_dim(self) -> int:
        """Size of the conditioning vector w (0 for an unconditional model)."""
        return self.encoder.w_dim if self.conditional else 0

    def __post_init__(self):
        _check_config(self)


def _fail(field: str, value: Any, accepted: str):
    raise ValueError(f"config.model.{field}={value!r} is invalid: expected {accepted}.")


def _check_config(c: ModelConfig):
    """Raises ValueError naming the field, the value and what is accepted."""
    if len(c.image_shape) != 3 or min(c.image_shape) < 1:
        _fail("image_shape", c.image_shape, "(height, width, channels) of positive ints")
    if c.vocab_size < 2:
        _fail("vocab_size", c.vocab_size, "an int >= 2")
    if c.gamma_type not in GAMMA_TYPES:
        _fail("gamma_type", c.gamma_type, f"one of {GAMMA_TYPES}")
    if not c.gamma_min < c.gamma_max:
        _fail("gamma_min", c.gamma_min, f"a float below gamma_max={c.gamma_max}")
    if c.sm_n_timesteps < 0:
        _fail("sm_n_timesteps", c.sm_n_timesteps, "0 (continuous time) or a positive int")
    if c.sm_n_embd < 1 or c.sm_n_layer < 0:
        _fail("sm_n_embd/sm_n_layer", (c.sm_n_embd, c.sm_n_layer), "positive sizes")
    if c.sm_n_embd % c.sm_norm_groups:
        _fail("sm_norm_groups", c.sm_norm_groups, f"a divisor of sm_n_embd={c.sm_n_embd}")
    if c.compute_dtype not in ("float32", "bfloat16"):
        _fail("compute_dtype", c.compute_dtype, "'float32' or 'bfloat16'")
    if c.attention_impl not in ATTENTION_IMPLS:
        _fail("attention_impl", c.attention_impl, f"one of {ATTENTION_IMPLS}")
    if not c.sm_ch_mult or min(c.sm_ch_mult) < 1:
        _fail("sm_ch_mult", c.sm_ch_mult, "a non-empty tuple of positive ints")
    if c.w_min_gamma is not None and not c.gamma_min < c.w_min_gamma < c.gamma_max:
        _fail("w_min_gamma", c.w_min_gamma,
              f"None or a float strictly between gamma_min={c.gamma_min} and "
              f"gamma_max={c.gamma_max}")
    if not 0.0 <= c.sm_pdrop < 1.0:
        _fail("sm_pdrop", c.sm_pdrop, "a float in [0, 1)")
    e = c.encoder
    if e.kind not in ENCODER_TYPES:
        _fail("encoder.kind", e.kind, f"one of {ENCODER_TYPES}")
    if c.conditional:
        if e.w_dim < 1:
            _fail("encoder.w_dim", e.w_dim, "a positive int")
        if e.block_out_channels % e.norm_num_groups:
            _fail("encoder.norm_num_groups", e.norm_num_groups,
                  f"a divisor of encoder.block_out_channels={e.block_out_channels}")
        if not e.channel_mult or min(e.channel_mult) < 1:
            _fail("encoder.channel_mult", e.channel_mult, "a non-empty tuple of positive ints")
        if e.out_channels < 1:
            _fail("encoder.out_channels", e.out_channels, "a positive int")
        if e.layers_per_block < 1:
            _fail("encoder.layers_per_block", e.layers_per_block, "a positive int")
    if c.w_prior_components < 0 or (c.w_prior_components and not c.conditional):
        _fail("w_prior_components", c.w_prior_components,
              "0 (w ~ N(0, I)), or a positive int with an encoder")
    if c.w_prior_components and (c.loss.free_bits or c.loss.mmd_weight):
        _fail("w_prior_components", c.w_prior_components,
              "0 when loss.free_bits or loss.mmd_weight is set (both act on the KL to N(0, I))")
    if c.w_prior_vdm and not c.conditional:
        _fail("w_prior_vdm", c.w_prior_vdm, "False without an encoder (there is no w)")
    if c.w_prior_vdm and c.w_prior_components:
        _fail("w_prior_vdm", c.w_prior_vdm,
              f"False with w_prior_components={c.w_prior_components} (one prior at a time)")
    if c.w_prior_vdm and (c.loss.free_bits or c.loss.mmd_weight):
        _fail("w_prior_vdm", c.w_prior_vdm,
              "False when loss.free_bits or loss.mmd_weight is set (both act on the KL to N(0, I))")
    if c.w_prior_vdm_hidden < 1:
        _fail("w_prior_vdm_hidden", c.w_prior_vdm_hidden, "a positive int")
    if c.w_film and not c.conditional:
        _fail("w_film", c.w_film, "False without an encoder (there is no w)")
    loss = c.loss
    for name in ("beta", "free_bits", "capacity", "mmd_weight"):
        if getattr(loss, name) < 0:
            _fail(f"loss.{name}", getattr(loss, name), "a float >= 0")


def model_config_from_dict(d: Mapping[str, Any],
                           image_shape: Optional[Tuple[int, int, int]] = None) -> ModelConfig:
    """Builds a ModelConfig from a plain mapping (e.g. `config.model.to_dict()`).

    Unknown keys raise a ValueError that lists the accepted ones.
    """
    d = dict(d)
    enc = dict(d.pop("encoder", {}) or {})
    loss = dict(d.pop("loss", {}) or {})
    if image_shape is not None:
        d["image_shape"] = tuple(image_shape)
    if "image_shape" in d:
        d["image_shape"] = tuple(int(s) for s in d["image_shape"])
    if "sm_ch_mult" in d:
        d["sm_ch_mult"] = tuple(int(m) for m in d["sm_ch_mult"])
    if "channel_mult" in enc:
        enc["channel_mult"] = tuple(int(m) for m in enc["channel_mult"])
    for cls, kw, prefix in ((EncoderConfig, enc, "encoder."), (LossConfig, loss, "loss."),
                            (ModelConfig, d, "")):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise ValueError(f"config.model.{prefix}{unknown[0]} is not a model field: "
                             f"expected one of {sorted(known - {'encoder', 'loss'})}.")
    return ModelConfig(encoder=EncoderConfig(**enc), loss=LossConfig(**loss), **d)


def model_config_to_dict(c: ModelConfig) -> dict:
    """Inverse of `model_config_from_dict`, JSON-serialisable."""
    d = dataclasses.asdict(c)
    d["image_shape"] = list(c.image_shape)
    d["sm_ch_mult"] = list(c.sm_ch_mult)
    d["encoder"]["channel_mult"] = list(c.encoder.channel_mult)
    return d
