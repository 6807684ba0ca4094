"""The MNIST CPU protocol's encoder run with the plain ELBO (beta = 1, no remedy).

Run:   python main.py --config=configs/mnist_cpu_b1.py --workdir=runs/mnist_cpu_b1
Smoke: python main.py --config=configs/mnist_cpu_b1.py:smoke --workdir=/tmp/mnist_cpu_b1
"""

from configs import base


def get_config(arg=None):
    config = base.mnist_cpu(encoder=True)
    config.name += "_b1"
    return base.finish(config, arg)
