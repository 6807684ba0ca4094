"""The MNIST CPU protocol's encoder run with w at every noise level: configs/mnist_cpu.py without
its gate (the score U-Net sees w at every gamma_t), i.e. the capacity target of 10 nats on the KL
of w alone (beta = 1; the objective uses |KL - 10|; the reported bpd is the full bound at weight 1).

Run:   python main.py --config=configs/mnist_cpu_ungated.py --workdir=runs/mnist_cpu_ungated
Smoke: python main.py --config=configs/mnist_cpu_ungated.py:smoke --workdir=/tmp/mnist_cpu_ungated
See configs/base.py `mnist_cpu` and experiments/mnist_cpu.sh.
"""

from configs import base


def get_config(arg=None):
    config = base.mnist_cpu(encoder=True)
    config.name += "_ungated"
    config.model.loss.capacity = 10.0
    return base.finish(config, arg)
