"""The MNIST CPU protocol's unconditional model: multi-resolution VDM, no encoder.

The reference for the encoder runs of the protocol (same decoder, same optimisation); see
configs/base.py `mnist_cpu` and experiments/mnist_cpu.sh.
Run:   python main.py --config=configs/mnist_cpu_uncond.py --workdir=runs/mnist_cpu_uncond
Smoke: python main.py --config=configs/mnist_cpu_uncond.py:smoke --workdir=/tmp/mnist_cpu_uncond
"""

from configs import base


def get_config(arg=None):
    return base.finish(base.mnist_cpu(encoder=False), arg)
