"""configs/mnist_cpu_c30_w128.py with w of 512 dimensions: the second point of the width curve.
At matched steps, the full linear probe on mu(x) rose from c30's 32 dimensions to 128 (0.917 ->
0.948 at step 2,500, 0.941 -> 0.958 at 4,500) while the bound stayed within 0.006; the encoder's
784 features before its last Dense reach 0.984 linearly. 512 dimensions test whether a yet wider
projection keeps that readability. About w128's step cost (3.44 against 3.26 CPU-hours for
5,000 steps and the evaluation, on 2 cores).

Run:   python main.py --config=configs/mnist_cpu_c30_w512.py --workdir=runs/mnist_cpu_c30_w512
Smoke: python main.py --config=configs/mnist_cpu_c30_w512.py:smoke --workdir=/tmp/c30_w512
"""

from configs import base, mnist_cpu_c30


def get_config(arg=None):
    config = mnist_cpu_c30.get_config()
    config.name += "_w512"
    config.model.encoder.w_dim = 512
    return base.finish(config, arg)
