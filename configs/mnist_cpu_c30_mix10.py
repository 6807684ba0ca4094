"""configs/mnist_cpu_c30.py with a prior p(w) learned with the model: a mixture of 10 diagonal
Gaussians instead of N(0, I). The capacity target still asks for 30 nats of KL, now to the
mixture: what N(0, I) charges for codes that cluster (by class, say) the mixture need not, so
more of the 30 nats can be information about x. The bound stays the full bound (beta = 1, the
KL to the learned prior estimated without bias); the pilot of whether clustering codes make
mu(x) linearly readable.

Run:   python main.py --config=configs/mnist_cpu_c30_mix10.py --workdir=runs/mnist_cpu_c30_mix10
Smoke: python main.py --config=configs/mnist_cpu_c30_mix10.py:smoke --workdir=/tmp/mix10
"""

from configs import base, mnist_cpu_c30


def get_config(arg=None):
    config = mnist_cpu_c30.get_config()
    config.name += "_mix10"
    config.model.w_prior_components = 10
    return base.finish(config, arg)
