"""TVDM (8 blocks x 32 channels) on MNIST, unconditional (no encoder).

Run:   python main.py --config=configs/tvdm.py --workdir=runs/tvdm
Smoke: python main.py --config=configs/tvdm.py:smoke --workdir=/tmp/tvdm
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="tvdm", arg=arg)
