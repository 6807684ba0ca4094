"""TVDM (8 blocks x 32 channels) on CIFAR-10 (TFDS), with the unregularised encoder UE (OE with
beta = 0: no KL in the objective; the reported bpd still includes it).

Run:   python main.py --config=configs/tvdm_ue_cifar10.py --workdir=runs/tvdm_ue_cifar10
Smoke: python main.py --config=configs/tvdm_ue_cifar10.py:smoke --workdir=/tmp/tvdm_ue_cifar10
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="tvdm", encoder="ue", dataset="cifar10", arg=arg)
