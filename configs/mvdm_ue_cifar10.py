"""MVDM (4 blocks x 16 channels) on CIFAR-10 (TFDS), with the unregularised encoder UE (OE with
beta = 0: no KL in the objective; the reported bpd still includes it).

Run:   python main.py --config=configs/mvdm_ue_cifar10.py --workdir=runs/mvdm_ue_cifar10
Smoke: python main.py --config=configs/mvdm_ue_cifar10.py:smoke --workdir=/tmp/mvdm_ue_cifar10
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="mvdm", encoder="ue", dataset="cifar10", arg=arg)
