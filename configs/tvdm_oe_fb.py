"""TVDM with OE and the collapse remedies: KL warm-up (beta 0 -> 1 over the first 30% of
training) and free bits (the batch-mean KL of each dimension of w is floored at 0.03 nats).

The reported bpd is the full bound with beta = 1; expect KL of w > 0 and many active units.
Run:   python main.py --config=configs/tvdm_oe_fb.py --workdir=runs/tvdm_oe_fb
Smoke: python main.py --config=configs/tvdm_oe_fb.py:smoke --workdir=/tmp/tvdm_oe_fb
"""

from configs import base


def get_config(arg=None):
    config = base.make(vdm="tvdm", encoder="oe")
    config.name += "_fb"
    config.model.loss.free_bits = 0.03
    config.training.beta_warmup_fraction = 0.3
    return base.finish(config, arg)
