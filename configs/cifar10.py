"""google-research/vdm's own CIFAR-10 model: unconditional, 32 blocks x 128 channels.

Learnable scalar schedule, Fourier features, dropout 0.1, GroupNorm 32, batch 128, lr 2e-4,
AdamW (0.9, 0.99), EMA 0.9999; no sample clipping. The paper reports 2.65 bpd after 10M steps.
Run:   python main.py --config=configs/cifar10.py --workdir=runs/cifar10   (needs the tfds extra)
Smoke: python main.py --config=configs/cifar10.py:smoke --workdir=/tmp/cifar10
"""

from configs import base


def get_config(arg=None):
    config = base.base_config()
    config.name = "cifar10"
    config.data.update(source="tfds", name="cifar10")
    config.model.update(gamma_type="learnable_scalar", with_fourier_features=True,
                        sm_n_layer=32, sm_n_embd=128, sm_norm_groups=32, sm_pdrop=0.1,
                        clip_samples=False)
    config.training.update(batch_size_train=128, batch_size_eval=128,
                           num_steps_train=10_000_000, steps_per_eval=10_000,
                           steps_per_save=10_000)
    config.optimizer.update(gradient_clip_norm=0.0, ema_warmup_power=0.0,
                            no_decay_leaves=("bias",), no_decay_modules=())
    return base.finish(config, arg)
