"""SVDM (16 blocks x 64 channels) on MNIST, with the original encoder OE (64 ch, 2 layers, w_dim
128), beta = 1.

Run:   python main.py --config=configs/svdm_oe.py --workdir=runs/svdm_oe
Smoke: python main.py --config=configs/svdm_oe.py:smoke --workdir=/tmp/svdm_oe
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", encoder="oe", arg=arg)
