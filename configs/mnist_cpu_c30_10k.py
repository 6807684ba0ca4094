"""configs/mnist_cpu_c30.py on a schedule twice as long (10,000 steps, the learning rate decayed
linearly to 0 over them): whether more budget lifts the linear probe on mu(x), which is flat at
the end of c30's 5,000-step schedule. Outside the protocol's budget of about 2 hours: about 4
hours of 2 cores.

Run:   python main.py --config=configs/mnist_cpu_c30_10k.py --workdir=runs/mnist_cpu_c30_10k
Smoke: python main.py --config=configs/mnist_cpu_c30_10k.py:smoke --workdir=/tmp/c30_10k
"""

from configs import base, mnist_cpu_c30


def get_config(arg=None):
    config = mnist_cpu_c30.get_config()
    config.name += "_10k"
    config.training.num_steps_train = 10_000
    return base.finish(config, arg)
