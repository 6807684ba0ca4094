"""configs/mnist_cpu.py with w seen by the score U-Net only where gamma_t >= 2 (signal-to-noise
ratio at most exp(-2) = 0.14, the last 16% of t on the protocol's fixed schedule) instead of
gamma_t >= 0: the pilot of whether a code confined to the noisiest levels, where only the
digit's coarse shape survives in z_t, spends its 10 nats on what separates the classes (the
linear probe on mu(x)) rather than on detail. The bound keeps its form.

Run:   python main.py --config=configs/mnist_cpu_g2.py --workdir=runs/mnist_cpu_g2
Smoke: python main.py --config=configs/mnist_cpu_g2.py:smoke --workdir=/tmp/mnist_cpu_g2
"""

from configs import base, mnist_cpu


def get_config(arg=None):
    config = mnist_cpu.get_config()
    config.name += "_g2"
    config.model.w_min_gamma = 2.0
    return base.finish(config, arg)
