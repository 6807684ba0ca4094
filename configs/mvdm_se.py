"""MVDM (4 blocks x 16 channels) on MNIST, with the small encoder SE (32 ch, 1 layer, w_dim 128),
beta = 1.

Run:   python main.py --config=configs/mvdm_se.py --workdir=runs/mvdm_se
Smoke: python main.py --config=configs/mvdm_se.py:smoke --workdir=/tmp/mvdm_se
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="mvdm", encoder="se", arg=arg)
