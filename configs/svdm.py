"""SVDM (16 blocks x 64 channels) on MNIST, unconditional (no encoder).

Run:   python main.py --config=configs/svdm.py --workdir=runs/svdm
Smoke: python main.py --config=configs/svdm.py:smoke --workdir=/tmp/svdm
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="svdm", arg=arg)
