"""SVDM (16 blocks x 64 channels) on MNIST, with the tiny encoder TE (16 ch, 1 layer, w_dim 128),
beta = 1.

Run:   python main.py --config=configs/svdm_te.py --workdir=runs/svdm_te
Smoke: python main.py --config=configs/svdm_te.py:smoke --workdir=/tmp/svdm_te
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", encoder="te", arg=arg)
