"""TVDM with OE at the study's KL weight beta = 10^4, which reproduces its posterior collapse.

The reported bpd is still the full bound (KL at weight 1); only the objective differs.
Run:   python main.py --config=configs/tvdm_oe_b1e4.py --workdir=runs/tvdm_oe_b1e4
Smoke: python main.py --config=configs/tvdm_oe_b1e4.py:smoke --workdir=/tmp/tvdm_oe_b1e4
"""

from configs import base


def get_config(arg=None):
    config = base.make(vdm="tvdm", encoder="oe")
    config.name += "_b1e4"
    config.model.loss.beta = 1e4
    return base.finish(config, arg)
