"""Times the study's PyTorch train step and reverse step on this machine, to set beside ours.

    git clone https://github.com/diegogcerdas/VAE-VDM /tmp/VAE-VDM
    pip install torch==2.13.0 diffusers==0.42.1 && pip install --no-deps ema-pytorch==0.1.4
    python benchmarks/time_study_code.py --study /tmp/VAE-VDM --size svdm --encoder none

One step is timed as the study's training loop runs it (zero_grad, forward, backward,
clip_grad_norm_(1.0), AdamW, EMA update past its first 100 steps) with the settings of its
scripts/{M,T,S}VDM{,_OE}.sh at batch 64 on 28x28x1, and one reverse step is its `sample_p_s_t`;
an evaluation forward pass is its EMA model's loss without gradients, as its periodic
evaluation runs it. On CUDA where torch sees a GPU (model and batch on it, synchronised before a
call returns), else on the CPU. `--smoke` builds tiny widths on 8x8 images. Imports the model
code does not use (torchvision, torchinfo, accelerate) are stubbed. Prints one JSON line with
the median and minimum seconds, comparable to `python benchmarks/bench.py`'s
train_step_median_s and reverse_step_median_s; experiments/side_by_side.py alternates the two
programs, benchmarks/interleaved.py and benchmarks/gpu_check.py take turns with ours.
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


def study_config(size: str, encoder: bool, smoke: bool = False) -> types.SimpleNamespace:
    """The study's settings for MNIST (scripts/*.sh and train.py defaults); `smoke`: tiny
    widths (1 block of 8 channels, an encoder of 8 channels and w_dim 8) for 8x8 images."""
    n_blocks, embedding_dim = (1, 8) if smoke else SIZES[size]
    channels, layers, groups, w_dim = (8, 1, 4, 8) if smoke else (64, 2, 32, 128)
    return types.SimpleNamespace(
        use_mnist=True, use_encoder=encoder, w_dim=w_dim, block_out_channels=channels,
        layers_per_block=layers, norm_num_groups=groups, embedding_dim=embedding_dim,
        n_blocks=n_blocks, n_attention_heads=1, dropout_prob=0.1, norm_groups=8,
        input_channels=1, use_fourier_features=False, attention_everywhere=False,
        batch_size=64, noise_schedule="fixed_linear", gamma_min=-13.3, gamma_max=5.0,
        antithetic_time_sampling=True, encoder_loss_weight=1e4)


def _synchronize(device):
    """Waits for the device's queued work (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def study_train_step(study: str, size: str, encoder: str, batch: int = 64,
                     smoke: bool = False):
    """(train_step, ema_model, cfg): one call of train_step runs one step of the study's
    training loop on a fixed batch [batch, 1, 28, 28] ([batch, 1, 8, 8] with `smoke`), on the
    GPU where torch sees one, and returns its loss once the device is done. ema_model: the
    EMA copy that the study's evaluation and sampling use."""
    import torch

    VDM, UNetVDM, Encoder, EMA = import_study(study)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = study_config(size, encoder == "oe", smoke)
    shape = (1, 8, 8) if smoke else (1, 28, 28)
    enc = Encoder(shape, cfg) if cfg.use_encoder else None
    vdm = VDM(UNetVDM(cfg), cfg, image_shape=shape, encoder=enc).to(device)
    ema = EMA(vdm, beta=0.9999, update_every=1, power=0.75)
    ema.ema_model.eval()
    # The study's EMA copies the weights for its first 100 steps and averages them after:
    # time the average, as in all but those first steps of a run.
    ema.step.fill_(ema.update_after_step + 1)
    opt = torch.optim.AdamW(vdm.parameters(), 2e-4, betas=(0.9, 0.99), weight_decay=0.01,
                            eps=1e-8)
    x = (torch.randint(0, 256, (batch,) + shape).float() / 255).to(device)

    def train_step():
        opt.zero_grad()
        loss, _ = vdm(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vdm.parameters(), 1.0)
        opt.step()
        ema.update()
        value = loss.item()
        _synchronize(device)
        return value

    return train_step, ema.ema_model, cfg


def study_eval_calls(model, cfg, batch: int = 64):
    """(reverse_step, eval_forward) on `model`, each one call that returns once the device is
    done: one ancestral step `sample_p_s_t` of a batch, and one forward pass of the loss
    without gradients (as the study's `evaluate_model`) on a fixed batch."""
    import torch

    device = model.device
    shape = model.image_shape
    z = torch.randn((batch,) + shape, device=device)
    w = torch.randn(batch, cfg.w_dim, device=device) if cfg.use_encoder else None
    t, s = torch.tensor(0.5, device=device), torch.tensor(0.499, device=device)
    x = (torch.randint(0, 256, (batch,) + shape).float() / 255).to(device)

    @torch.no_grad()
    def reverse_step():
        model.sample_p_s_t(z, t, s, True, w=w)
        _synchronize(device)

    @torch.no_grad()
    def eval_forward():
        loss, _ = model(x)
        loss.item()
        _synchronize(device)

    return reverse_step, eval_forward


def _seconds(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", required=True, help="root of a checkout of "
                   "diegogcerdas/VAE-VDM (its src/ is imported)")
    p.add_argument("--size", choices=sorted(SIZES), required=True)
    p.add_argument("--encoder", choices=("none", "oe"), default="none")
    p.add_argument("--repeats", type=int, default=5, help="timed train steps (after 2 warm-up)")
    p.add_argument("--sample-repeats", type=int, default=5, help="timed reverse steps and "
                   "evaluation forward passes")
    p.add_argument("--smoke", action="store_true", help="tiny widths on 8x8 images")
    args = p.parse_args(argv)

    import torch

    train_step, ema_model, cfg = study_train_step(args.study, args.size, args.encoder,
                                                  smoke=args.smoke)
    for _ in range(2):
        train_step()
    train = _seconds(train_step, args.repeats)
    reverse_step, eval_forward = study_eval_calls(ema_model, cfg)
    reverse_step(), eval_forward()
    reverse = _seconds(reverse_step, args.sample_repeats)
    forward = _seconds(eval_forward, args.sample_repeats)
    print(json.dumps({"code": "study (PyTorch)", "size": args.size, "encoder": args.encoder,
                      "train_step_median_s": statistics.median(train),
                      "train_step_min_s": min(train),
                      "reverse_step_median_s": statistics.median(reverse),
                      "eval_forward_median_s": statistics.median(forward),
                      "device": str(ema_model.device), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}),
          flush=True)


if __name__ == "__main__":
    main()
