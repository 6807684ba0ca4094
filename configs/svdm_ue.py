"""SVDM (16 blocks x 64 channels) on MNIST, with the unregularised encoder UE (OE with beta = 0: no
KL in the objective; the reported bpd still includes it).

Run:   python main.py --config=configs/svdm_ue.py --workdir=runs/svdm_ue
Smoke: python main.py --config=configs/svdm_ue.py:smoke --workdir=/tmp/svdm_ue
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", encoder="ue", arg=arg)
