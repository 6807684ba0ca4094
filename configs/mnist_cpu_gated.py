"""The MNIST CPU protocol's encoder run with w seen only at high noise: configs/mnist_cpu.py
(capacity target of 10 nats, beta = 1) whose score U-Net sees w only where gamma_t >= 0, i.e.
where the signal-to-noise ratio is at most 1 and the noise hides the digit's global shape.

The bound keeps its form (the reported bpd is the full bound at weight 1); what changes is where
w can lower it, so that its nats go to the global structure rather than to pixel detail.

Run:   python main.py --config=configs/mnist_cpu_gated.py --workdir=runs/mnist_cpu_gated
Smoke: python main.py --config=configs/mnist_cpu_gated.py:smoke --workdir=/tmp/mnist_cpu_gated
See configs/base.py `mnist_cpu` and experiments/mnist_cpu.sh.
"""

from configs import base, mnist_cpu


def get_config(arg=None):
    config = mnist_cpu.get_config()
    config.model.w_min_gamma = 0.0
    return base.finish(config, arg)
