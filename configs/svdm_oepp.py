"""SVDM (16 blocks x 64 channels) on MNIST, with the bigger original encoder OE++ (64 ch, 2 layers,
w_dim 256), beta = 1.

Run:   python main.py --config=configs/svdm_oepp.py --workdir=runs/svdm_oepp
Smoke: python main.py --config=configs/svdm_oepp.py:smoke --workdir=/tmp/svdm_oepp
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", encoder="oepp", arg=arg)
