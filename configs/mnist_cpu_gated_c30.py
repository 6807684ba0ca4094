"""configs/mnist_cpu_gated.py with a capacity target of 30 nats instead of 10: the pilot of
whether more information in w (about what a plain VAE on MNIST keeps) makes mu(x) linearly
readable, at a bound cost of 30 / (784 ln 2) = 0.055 bits/dim unless the decoder wins it back.

Run:   python main.py --config=configs/mnist_cpu_gated_c30.py --workdir=runs/mnist_cpu_gated_c30
Smoke: python main.py --config=configs/mnist_cpu_gated_c30.py:smoke --workdir=/tmp/c30
See configs/mnist_cpu_gated.py and experiments/mnist_cpu.sh.
"""

from configs import base, mnist_cpu_gated


def get_config(arg=None):
    config = mnist_cpu_gated.get_config()
    config.model.loss.capacity = 30.0
    return base.finish(config, arg)
