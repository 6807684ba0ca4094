"""TVDM (8 blocks x 32 channels) on MNIST, with the bigger original encoder OE++ (64 ch, 2 layers,
w_dim 256), beta = 1.

Run:   python main.py --config=configs/tvdm_oepp.py --workdir=runs/tvdm_oepp
Smoke: python main.py --config=configs/tvdm_oepp.py:smoke --workdir=/tmp/tvdm_oepp
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="tvdm", encoder="oepp", arg=arg)
