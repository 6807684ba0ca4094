"""configs/mnist_cpu.py with an MMD penalty (weight 1 in bits/dim) between the batch of codes w
and N(0, I) (InfoVAE, Zhao et al. 2019): the pilot of whether a code whose aggregate posterior
matches the prior spends its 10 nats on information about x rather than on the mismatch.

E_x KL(q(w|x) || N(0, I)) = I(x; w) + KL(q(w) || N(0, I)): the capacity target holds the left
side at 10 nats, so what the MMD removes from the mismatch can go to I(x; w). A prior that the
codes fill is also what sampling with w ~ N(0, I) needs. The reported bound keeps its form.

Run:   python main.py --config=configs/mnist_cpu_mmd.py --workdir=runs/mnist_cpu_mmd
Smoke: python main.py --config=configs/mnist_cpu_mmd.py:smoke --workdir=/tmp/mnist_cpu_mmd
"""

from configs import base, mnist_cpu


def get_config(arg=None):
    config = mnist_cpu.get_config()
    config.name += "_mmd"
    config.model.loss.mmd_weight = 1.0
    return base.finish(config, arg)
