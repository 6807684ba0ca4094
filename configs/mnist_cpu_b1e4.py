"""The MNIST CPU protocol's encoder run at the study's KL weight beta = 10^4 (its collapse).

The reported bpd is still the full bound (KL at weight 1); only the objective differs.
Run:   python main.py --config=configs/mnist_cpu_b1e4.py --workdir=runs/mnist_cpu_b1e4
Smoke: python main.py --config=configs/mnist_cpu_b1e4.py:smoke --workdir=/tmp/mnist_cpu_b1e4
"""

from configs import base


def get_config(arg=None):
    config = base.mnist_cpu(encoder=True)
    config.name += "_b1e4"
    config.model.loss.beta = 1e4
    return base.finish(config, arg)
