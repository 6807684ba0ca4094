"""The MNIST CPU protocol's main encoder run, its best so far: multi-resolution VDM + small
downsampling encoder (w_dim 32), beta = 1 with a capacity target of 10 nats on the KL of w (the
objective uses |KL - 10|), and a score U-Net that sees w only where gamma_t >= 0, i.e. where the
signal-to-noise ratio is at most 1 and the noise hides the digit's global shape.

The bound keeps its form (the reported bpd is the full bound at weight 1); what the gate changes
is where w can lower it, so that its nats go to the global structure rather than pixel detail.
5,000 steps at batch 64: about 3 hours of one core.

Run:   python main.py --config=configs/mnist_cpu.py --workdir=runs/mnist_cpu
Eval:  python main.py --config=configs/mnist_cpu.py --workdir=runs/mnist_cpu --mode=eval
Smoke: python main.py --config=configs/mnist_cpu.py:smoke --workdir=/tmp/mnist_cpu
See configs/base.py `mnist_cpu` and experiments/mnist_cpu.sh.
"""

from configs import base


def get_config(arg=None):
    config = base.mnist_cpu(encoder=True)
    config.model.loss.capacity = 10.0
    config.model.w_min_gamma = 0.0
    return base.finish(config, arg)
