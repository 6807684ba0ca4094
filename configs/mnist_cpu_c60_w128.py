"""configs/mnist_cpu_c30_w128.py with a capacity target of 60 nats instead of 30: the pilot of
whether more information in a 128-dimensional w lifts the linear probe on mu(x) to 0.97. From
capacity 10 to 30 (w of 32 dimensions) the probe rose from 0.929 to 0.944, and widening w to 128
lifted it to 0.959; the price is the KL: 60 / (784 ln 2) = 0.110 bits/dim unless the decoder
wins it back. Same step cost as c30_w128.

Run:   python main.py --config=configs/mnist_cpu_c60_w128.py --workdir=runs/mnist_cpu_c60_w128
Smoke: python main.py --config=configs/mnist_cpu_c60_w128.py:smoke --workdir=/tmp/c60_w128
"""

from configs import base, mnist_cpu_c30_w128


def get_config(arg=None):
    config = mnist_cpu_c30_w128.get_config()
    config.name = "mnist_cpu_c60_w128"
    config.model.loss.capacity = 60.0
    return base.finish(config, arg)
