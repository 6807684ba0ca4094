"""configs/mnist_cpu_c60_w128.py with configs/mnist_cpu_c30_w128_d2.py's encoder (two blocks per
level): whether the two levers that each lifted c30_w128's linear probe at the protocol budget
(a capacity of 60 nats: 0.959 -> 0.963; the deeper encoder: 0.959 -> 0.962) add up to the 0.97
target within it. About 4 CPU-hours for the 5,000 steps, as c30_w128_d2.

Run:   python main.py --config=configs/mnist_cpu_c60_w128_d2.py --workdir=runs/c60_w128_d2
Smoke: python main.py --config=configs/mnist_cpu_c60_w128_d2.py:smoke --workdir=/tmp/c60_d2
"""

from configs import base, mnist_cpu_c60_w128


def get_config(arg=None):
    config = mnist_cpu_c60_w128.get_config()
    config.name += "_d2"
    config.model.encoder.layers_per_block = 2
    return base.finish(config, arg)
