"""SVDM (16 blocks x 64 channels) on MNIST, with the small encoder SE (32 ch, 1 layer, w_dim 128),
beta = 1.

Run:   python main.py --config=configs/svdm_se.py --workdir=runs/svdm_se
Smoke: python main.py --config=configs/svdm_se.py:smoke --workdir=/tmp/svdm_se
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", encoder="se", arg=arg)
