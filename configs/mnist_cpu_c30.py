"""configs/mnist_cpu.py with a capacity target of 30 nats instead of 10 (w seen at SNR <= 1):
the pilot of whether more information in w (about what a plain VAE on MNIST keeps) makes mu(x)
linearly readable, at a bound cost of 30 / (784 ln 2) = 0.055 bits/dim unless the decoder wins
it back.

Run:   python main.py --config=configs/mnist_cpu_c30.py --workdir=runs/mnist_cpu_c30
Smoke: python main.py --config=configs/mnist_cpu_c30.py:smoke --workdir=/tmp/mnist_cpu_c30
"""

from configs import base, mnist_cpu


def get_config(arg=None):
    config = mnist_cpu.get_config()
    config.name += "_c30"
    config.model.loss.capacity = 30.0
    return base.finish(config, arg)
