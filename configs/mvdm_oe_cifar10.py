"""MVDM (4 blocks x 16 channels) on CIFAR-10 (TFDS), with the original encoder OE (64 ch, 2 layers,
w_dim 128), beta = 1.

Run:   python main.py --config=configs/mvdm_oe_cifar10.py --workdir=runs/mvdm_oe_cifar10
Smoke: python main.py --config=configs/mvdm_oe_cifar10.py:smoke --workdir=/tmp/mvdm_oe_cifar10
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="mvdm", encoder="oe", dataset="cifar10", arg=arg)
