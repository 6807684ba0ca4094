"""configs/mnist_cpu_uncond.py on the 10,000-step schedule of configs/mnist_cpu_c30_10k.py (the
learning rate decayed linearly to 0 over them): the unconditional run that c30_10k's bound is
paired with, so that the longer training is not credited to the encoder. About 5.3 CPU-hours.

Run:   python main.py --config=configs/mnist_cpu_uncond_10k.py --workdir=runs/mnist_cpu_uncond_10k
Smoke: python main.py --config=configs/mnist_cpu_uncond_10k.py:smoke --workdir=/tmp/uncond_10k
"""

from configs import base, mnist_cpu_uncond


def get_config(arg=None):
    config = mnist_cpu_uncond.get_config()
    config.name += "_10k"
    config.training.num_steps_train = 10_000
    return base.finish(config, arg)
