"""Parameter counts of the encoders and score U-Nets, beside the study's reported numbers.

`python benchmarks/param_counts.py` prints a markdown table; `--json` prints its rows.

Counts under "here" come from the Flax modules (`jax.eval_shape`, nothing allocated); a
decoder's count is its score U-Net plus the noise schedule. "study code" is what the study's
PyTorch U-Net (src/models/vdm_unet.py of diegogcerdas/VAE-VDM) builds, from the formula in
`study_unet_params`; "study reported" is the study's Tables 1 and 2. Both U-Nets keep the
resolution and share their layout: conv_in, n ResNet blocks down, ResNet-attention-ResNet in
the middle, n + 1 ResNet blocks up on concatenated skips, GroupNorm and conv_out. Their
attention (three 1x1 projections and an output one) and shortcut (a 1x1 map from 2E to E)
have equal sizes; they differ only in the conditioning path, the Fourier features and the
schedule, which the "why" column itemises.

Here w is concatenated to the sinusoidal time embedding before dense0, as google-research/vdm
does with its conditioning, so a conditional decoder is the unconditional one plus
(w_dim - 1) * 4 * n_embd rows of dense0. The study instead widens its time MLP to w_dim and
appends w to the MLP's output, so its conditional and unconditional decoders differ in size
throughout.
"""

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.model.config import EncoderConfig, ModelConfig
from vdm_vae.model.encoder import Encoder
from vdm_vae.model.vae import init_params

MNIST_SHAPE = (28, 28, 1)
CIFAR10_SHAPE = (32, 32, 3)
ENCODERS = {
    "OE++": EncoderConfig("conv", block_out_channels=64, layers_per_block=2,
                          norm_num_groups=32, w_dim=256),
    "OE": EncoderConfig("conv", block_out_channels=64, layers_per_block=2,
                        norm_num_groups=32, w_dim=128),
    "SE": EncoderConfig("conv", block_out_channels=32, layers_per_block=1,
                        norm_num_groups=16, w_dim=128),
    "TE": EncoderConfig("conv", block_out_channels=16, layers_per_block=1,
                        norm_num_groups=8, w_dim=128),
}
VDM_SIZES = {"SVDM": (16, 64), "TVDM": (8, 32), "MVDM": (4, 16)}  # (blocks, channels)
W_DIMS = (128, 256)

# The study's Tables 1 and 2 (its decoders were all trained with w_dim 128).
STUDY_REPORTED = {"OE++": 716_481, "OE": 515_521, "SE": 261_793, "TE": 216_529,
                  "SVDM w128": 3_979_521, "TVDM w128": 261_793, "MVDM w128": 131_265,
                  "VDM-32x128 w128": 31_656_961}
# google-research/vdm's own U-Net at the same sizes (28x28x1; CIFAR-10 at 32x32x3).
GOOGLE_VDM = {"SVDM": 4_039_683, "TVDM": 560_899, "MVDM": 84_675, "CIFAR-10 VDM": 30_578_181}
STUDY_NOTES = {
    "TVDM w128": "The study's 261,793 repeats SE's encoder count; its code builds {code:,}.",
    "VDM-32x128 w128": ("The study's {reported:,} ('original VDM, not used') is what its code "
                        "builds with the unconditional MLP E->4E->4E kept and w appended to "
                        "its output (cond_proj reads 4E + w = 640): {legacy:,}."),
}


def tree_size(tree) -> int:
    """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def encoder_params(config: EncoderConfig, image_shape: Sequence[int] = MNIST_SHAPE) -> int:
    """Parameters of the encoder q(w|x) for images of `image_shape` (H, W, C)."""
    images = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
    t = jnp.zeros((1,), jnp.float32)
    shapes = jax.eval_shape(lambda k: Encoder(config).init(k, images, t), jax.random.PRNGKey(0))
    return tree_size(shapes)


def decoder_params(config: ModelConfig) -> int:
    """Parameters of the VDM decoder: score U-Net plus noise schedule (not the encoder)."""
    shapes = jax.eval_shape(lambda k: init_params(config, k), jax.random.PRNGKey(0))["params"]
    return tree_size(shapes["score_model"]) + tree_size(shapes.get("gamma", {}))


def vdm_config(n_layer: int, n_embd: int, w_dim: int = 0,
               image_shape: Sequence[int] = MNIST_SHAPE, norm_groups: int = 8) -> ModelConfig:
    """The study's decoder sizes as a ModelConfig (Fourier features, learnable_scalar)."""
    encoder = EncoderConfig("conv", w_dim=w_dim) if w_dim else EncoderConfig()
    return ModelConfig(image_shape=tuple(image_shape), sm_n_layer=n_layer, sm_n_embd=n_embd,
                       sm_norm_groups=norm_groups, with_fourier_features=True,
                       with_attention=False, gamma_type="learnable_scalar", encoder=encoder)


def study_unet_params(n_blocks: int, e: int, channels: int, t_dim: int, cond_dim: int) -> int:
    """Parameters of the study's PyTorch `UNetVDM` as its runs built it: no Fourier features.

    Its default schedule (fixed_linear) has no parameters.

    Args:
      n_blocks: ResNet blocks on the way down (n + 1 on the way up).
      e: channels (embedding_dim).
      channels: image channels.
      t_dim: width of its time MLP Linear(e, t_dim) -> Linear(t_dim, t_dim); 4e
        unconditional, w_dim with an encoder.
      cond_dim: inputs of each block's cond_proj; t_dim + w_dim with an encoder.
    """
    def resnet(c_in):
        skip = c_in * e + e if c_in != e else 0
        return 2 * c_in + 9 * c_in * e + e + cond_dim * e + 2 * e + 9 * e * e + e + skip

    mlp = e * t_dim + t_dim + t_dim * t_dim + t_dim
    attention = 2 * e + 4 * e * e + 4 * e
    ends = 9 * channels * e + e + 2 * e + 9 * e * channels + channels
    return (mlp + ends + (n_blocks + 2) * resnet(e) + attention
            + (n_blocks + 1) * resnet(2 * e))


def study_code_params(n_blocks: int, e: int, w_dim: int, channels: int = 1) -> int:
    """What the study's code builds: time MLP to w_dim and w concatenated when w_dim > 0."""
    if w_dim:
        return study_unet_params(n_blocks, e, channels, w_dim, 2 * w_dim)
    return study_unet_params(n_blocks, e, channels, 4 * e, 4 * e)


def vdm_differences(n_blocks: int, e: int, w_dim: int, channels: int = 1
                    ) -> List[Tuple[str, int]]:
    """Itemised (here - study code), each (reason, parameters)."""
    n_res = 2 * n_blocks + 3
    items = [("Fourier features here, off in the study's runs (conv_in)", 36 * channels * e),
             ("learnable gamma w, b here; its default fixed_linear has none", 2)]
    if not w_dim:
        return items + [("dense0 also reads the zero conditioning scalar", 4 * e)]
    mlp_here = (e + w_dim) * 4 * e + 4 * e + 16 * e * e + 4 * e
    mlp_study = e * w_dim + w_dim + w_dim * w_dim + w_dim
    cond_proj = (f"cond_proj of the {n_res} ResNet blocks reads 4E = {4 * e} here, "
                 f"[MLP(t), w] = 2w = {2 * w_dim} there")
    return items + [
        ("time MLP: here [emb, w] -> 4E -> 4E, the study's E -> w -> w", mlp_here - mlp_study),
        (cond_proj, n_res * e * (4 * e - 2 * w_dim)),
    ]


def _why_vdm(name: str, n_blocks: int, e: int, w_dim: int, here: int, code: int,
             reported: Optional[int]) -> str:
    """The "why it differs" text of a decoder row; names any unexplained remainder."""
    items = vdm_differences(n_blocks, e, w_dim)
    text = "; ".join(f"{reason}: {n:+,}" for reason, n in items)
    rest = here - code - sum(n for _, n in items)
    if rest:
        text += f"; unexplained: {rest:+,}"
    if name in STUDY_NOTES:
        legacy = study_unet_params(n_blocks, e, 1, 4 * e, 4 * e + w_dim)
        note = STUDY_NOTES[name].format(code=code, reported=reported, legacy=legacy)
        text = f"{note} Here vs its code: {text}"
    return text


def _row(model, setting, here, google=None, reported=None, code=None, why="") -> Dict:
    return {"model": model, "setting": setting, "here": here, "google_vdm": google,
            "study_reported": reported, "study_code": code, "why": why}


def encoder_rows() -> List[Dict]:
    """One row per encoder of the study."""
    rows = []
    for name, enc in ENCODERS.items():
        here, reported = encoder_params(enc), STUDY_REPORTED[name]
        why = ("Same: diffusers' Encoder with one down block (no downsampling), conv_out to "
               "one map, then Dense(H*W -> 2 w_dim), as the study." if here == reported
               else f"Differs by {here - reported:+,}: the port is not faithful.")
        setting = (f"{enc.block_out_channels} ch, {enc.layers_per_block} ResNet/block, "
                   f"{enc.norm_num_groups} groups, w {enc.w_dim}")
        rows.append(_row(name, setting, here, reported=reported, why=why))
    return rows


def decoder_rows() -> List[Dict]:
    """Unconditional and conditional rows for every decoder size, then the full-size U-Net."""
    rows = []
    for size, (n_blocks, e) in VDM_SIZES.items():
        for w_dim in (0,) + W_DIMS:
            name = f"{size} w{w_dim}" if w_dim else size
            here = decoder_params(vdm_config(n_blocks, e, w_dim))
            code, reported = study_code_params(n_blocks, e, w_dim), STUDY_REPORTED.get(name)
            cond = f"w {w_dim}" if w_dim else "unconditional"
            rows.append(_row(name, f"{n_blocks} x {e} ch, {cond}", here,
                             None if w_dim else GOOGLE_VDM[size], reported, code,
                             _why_vdm(name, n_blocks, e, w_dim, here, code, reported)))
    here = decoder_params(vdm_config(32, 128, 128, norm_groups=32))
    code = study_code_params(32, 128, 128)
    name = "VDM-32x128 w128"
    rows.append(_row(name, "32 x 128 ch, w 128", here, None, STUDY_REPORTED[name], code,
                     _why_vdm(name, 32, 128, 128, here, code, STUDY_REPORTED[name])))
    cifar = decoder_params(vdm_config(32, 128, image_shape=CIFAR10_SHAPE, norm_groups=32))
    rows.append(_row("CIFAR-10 VDM", "32 x 128 ch, 32x32x3, unconditional", cifar,
                     GOOGLE_VDM["CIFAR-10 VDM"], why="Same architecture as google-research/vdm."))
    return rows


def to_markdown(rows: List[Dict]) -> str:
    """Rows as a markdown table; missing numbers print as an em dash."""
    cols = [("model", "Model"), ("setting", "Setting (28x28x1 unless said)"),
            ("here", "Here"), ("google_vdm", "google-research/vdm"),
            ("study_reported", "Study (reported)"), ("study_code", "Study (its code)"),
            ("why", "Why it differs")]

    def fmt(v):
        return "—" if v is None else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(title for _, title in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r[key]) for key, _ in cols) + " |" for r in rows]
    note = ("Here w adds only (w_dim - 1) * 4 * n_embd rows to dense0 (w joins the time "
            "embedding, as in google-research/vdm); the study's decoders change size with "
            "w_dim throughout (time MLP E -> w -> w, cond_proj reading 2 w_dim).")
    return "\n".join(lines + ["", note])


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Prints the table (or, with --json, the rows) to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = encoder_rows() + decoder_rows()
    sys.stdout.write((json.dumps(rows, indent=1) if args.json else to_markdown(rows)) + "\n")


if __name__ == "__main__":
    main()
