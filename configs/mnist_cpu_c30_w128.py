"""configs/mnist_cpu_c30.py with w of 128 dimensions instead of 32 (the study's w_dim): the pilot
of whether a wider code makes mu(x) linearly readable. In c30, what w carries is readable (a
one-hidden-layer MLP on mu reaches 0.980 on MNIST test, a linear probe 0.944), and the encoder's
784 features before its last Dense reach 0.984 linearly: the 32-dimensional projection is where
linear readability is lost. Same step cost (the last Dense and the U-Net's conditioning widen).

Run:   python main.py --config=configs/mnist_cpu_c30_w128.py --workdir=runs/mnist_cpu_c30_w128
Smoke: python main.py --config=configs/mnist_cpu_c30_w128.py:smoke --workdir=/tmp/c30_w128
"""

from configs import base, mnist_cpu_c30


def get_config(arg=None):
    config = mnist_cpu_c30.get_config()
    config.name += "_w128"
    config.model.encoder.w_dim = 128
    return base.finish(config, arg)
