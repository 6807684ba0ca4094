"""TVDM (8 blocks x 32 channels) on MNIST, with the unregularised encoder UE (OE with beta = 0: no
KL in the objective; the reported bpd still includes it).

Run:   python main.py --config=configs/tvdm_ue.py --workdir=runs/tvdm_ue
Smoke: python main.py --config=configs/tvdm_ue.py:smoke --workdir=/tmp/tvdm_ue
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="tvdm", encoder="ue", arg=arg)
