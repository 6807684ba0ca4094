"""Times the study's PyTorch train step and reverse step on this machine, to set beside ours.

    git clone https://github.com/diegogcerdas/VAE-VDM /tmp/VAE-VDM
    pip install torch==2.13.0 diffusers && pip install --no-deps ema-pytorch
    python benchmarks/time_study_code.py --study /tmp/VAE-VDM --size svdm --encoder none

One step is timed as the study's training loop runs it (zero_grad, forward, backward,
clip_grad_norm_(1.0), AdamW, EMA update) with the settings of its scripts/{M,T,S}VDM{,_OE}.sh
at batch 64 on 28x28x1, and one reverse step is its `sample_p_s_t`. Imports the model code
does not use (torchvision, torchinfo, accelerate) are stubbed. Prints one JSON line with the
median and minimum seconds, comparable to `python benchmarks/bench.py`'s train_step_median_s
and reverse_step_median_s; experiments/side_by_side.py alternates the two programs.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

SIZES = {"mvdm": (4, 16), "tvdm": (8, 32), "svdm": (16, 64)}  # (n_blocks, embedding_dim)


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_study(path: str):
    """(VDM, UNetVDM, Encoder, EMA) from a checkout of the study's repository (its root: the
    model code is imported from its src/ folder)."""
    src = os.path.join(path, "src")
    if not os.path.isdir(os.path.join(src, "models")):
        raise SystemExit(f"--study {path!r}: expected the root of a checkout of "
                         "diegogcerdas/VAE-VDM, with the model code in src/models/.")
    import diffusers.models.autoencoders.vae as vae

    _stub("torchvision", transforms=_stub("torchvision.transforms"),
          datasets=_stub("torchvision.datasets", CIFAR10=object, MNIST=object))
    _stub("torchinfo")
    _stub("accelerate", Accelerator=object)
    sys.modules["diffusers.models.vae"] = vae  # the study's diffusers had it there
    sys.path.insert(0, src)
    from ema_pytorch import EMA
    from models.encoder import Encoder
    from models.vdm import VDM
    from models.vdm_unet import UNetVDM
    return VDM, UNetVDM, Encoder, EMA


def study_config(size: str, encoder: bool) -> types.SimpleNamespace:
    """The study's settings for MNIST (scripts/*.sh and train.py defaults)."""
    n_blocks, embedding_dim = SIZES[size]
    return types.SimpleNamespace(
        use_mnist=True, use_encoder=encoder, w_dim=128, block_out_channels=64,
        layers_per_block=2, norm_num_groups=32, embedding_dim=embedding_dim, n_blocks=n_blocks,
        n_attention_heads=1, dropout_prob=0.1, norm_groups=8, input_channels=1,
        use_fourier_features=False, attention_everywhere=False, batch_size=64,
        noise_schedule="fixed_linear", gamma_min=-13.3, gamma_max=5.0,
        antithetic_time_sampling=True, encoder_loss_weight=1e4)


def study_train_step(study: str, size: str, encoder: str, batch: int = 64):
    """(train_step, vdm, cfg): one call of train_step runs one step of the study's training
    loop on a fixed batch [batch, 1, 28, 28] and returns its loss."""
    import torch

    VDM, UNetVDM, Encoder, EMA = import_study(study)
    torch.manual_seed(0)
    cfg = study_config(size, encoder == "oe")
    enc = Encoder((1, 28, 28), cfg) if cfg.use_encoder else None
    vdm = VDM(UNetVDM(cfg), cfg, image_shape=(1, 28, 28), encoder=enc)
    ema = EMA(vdm, beta=0.9999, update_every=1, power=0.75)
    opt = torch.optim.AdamW(vdm.parameters(), 2e-4, betas=(0.9, 0.99), weight_decay=0.01,
                            eps=1e-8)
    x = torch.randint(0, 256, (batch, 1, 28, 28)).float() / 255

    def train_step():
        opt.zero_grad()
        loss, _ = vdm(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vdm.parameters(), 1.0)
        opt.step()
        ema.update()
        return loss.item()

    return train_step, vdm, cfg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True, help="root of a checkout of "
                   "diegogcerdas/VAE-VDM (its src/ is imported)")
    p.add_argument("--size", choices=sorted(SIZES), required=True)
    p.add_argument("--encoder", choices=("none", "oe"), default="none")
    p.add_argument("--repeats", type=int, default=5, help="timed train steps (after 2 warm-up)")
    p.add_argument("--sample-repeats", type=int, default=5, help="timed reverse steps")
    args = p.parse_args(argv)

    import torch

    train_step, vdm, cfg = study_train_step(args.study, args.size, args.encoder)
    for _ in range(2):
        train_step()
    train = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        train_step()
        train.append(time.perf_counter() - start)
    w = torch.randn(64, 128) if cfg.use_encoder else None
    z = torch.randn(64, 1, 28, 28)
    reverse = []
    with torch.no_grad():
        t, s = torch.tensor(0.5), torch.tensor(0.499)
        vdm.sample_p_s_t(z, t, s, True, w=w)
        for _ in range(args.sample_repeats):
            start = time.perf_counter()
            z = vdm.sample_p_s_t(z, t, s, True, w=w)
            reverse.append(time.perf_counter() - start)
    print(json.dumps({"code": "study (PyTorch)", "size": args.size, "encoder": args.encoder,
                      "train_step_median_s": statistics.median(train),
                      "train_step_min_s": min(train),
                      "reverse_step_median_s": statistics.median(reverse),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}),
          flush=True)


if __name__ == "__main__":
    main()
