"""MVDM (4 blocks x 16 channels) on MNIST, unconditional (no encoder).

Run:   python main.py --config=configs/mvdm.py --workdir=runs/mvdm
Smoke: python main.py --config=configs/mvdm.py:smoke --workdir=/tmp/mvdm
Study defaults: batch 64, 100k steps, AdamW lr 2e-4; see configs/base.py.
"""

from configs import base


def get_config(arg=None):
    return base.make(vdm="mvdm", arg=arg)
