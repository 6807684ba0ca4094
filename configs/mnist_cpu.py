"""The MNIST CPU protocol's encoder run: multi-resolution VDM + downsampling encoder, beta = 1,
with a capacity target of 10 nats on the KL of w (the objective uses |KL - 10|; the reported
bpd is the full bound at weight 1).

Run:   python main.py --config=configs/mnist_cpu.py --workdir=runs/mnist_cpu
Smoke: python main.py --config=configs/mnist_cpu.py:smoke --workdir=/tmp/mnist_cpu
See configs/base.py `mnist_cpu` and experiments/mnist_cpu.sh.
"""

from configs import base


def get_config(arg=None):
    config = base.mnist_cpu(encoder=True)
    config.model.loss.capacity = 10.0
    return base.finish(config, arg)
