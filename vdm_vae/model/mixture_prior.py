"""A prior p(w) learned with the model: a mixture of K diagonal Gaussians of equal weight.

With p(w) = (1/K) sum_k N(w; m_k, diag(s_k^2)) the KL of q(w|x) = N(mu, sigma^2) has no closed
form. The bound's term is estimated per example as

    KL(q || p) = -H[q] - E_q[log p(w)],

with the entropy H[q] exact and the cross-entropy from the draw of w that the decoder sees:
an unbiased estimate, so the reported bound stays the full bound in expectation.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vdm_vae.model.diffusion import gaussian_entropy

INIT_MEAN_SCALE = 0.05


class MixturePrior(nn.Module):
    """p(w), an equal-weight mixture of `num_components` diagonal Gaussians over R^w_dim.

    Parameters: means [K, D] and log_scales [K, D]. The means start near 0 (draws of
    N(0, INIT_MEAN_SCALE^2)) and the scales at 1, so that every component starts under the
    codes (means drawn from N(0, I) start ~sqrt(2 D) apart, and the one nearest the codes takes
    them all). The weights stay equal, so leaving components unused costs log K nats. A
    component learns only through its responsibility for the codes: in the MNIST CPU protocol
    (experiments/results/mnist_cpu.md) one component held nearly all of them for the first
    1,000 steps from both starts, and the components parted later, not by class.
    """

    num_components: int
    w_dim: int

    def setup(self):
        k, d = self.num_components, self.w_dim
        self.means = self.param("means", nn.initializers.normal(INIT_MEAN_SCALE), (k, d))
        self.log_scales = self.param("log_scales", nn.initializers.zeros, (k, d))

    def component_log_probs(self, w: jax.Array) -> jax.Array:
        """log(1/K) + log N(w; m_k, s_k^2) for w [B, D]: [B, K]."""
        z = (w[:, None, :] - self.means[None]) * jnp.exp(-self.log_scales)[None]
        log_normal = -0.5 * jnp.sum(z ** 2 + 2.0 * self.log_scales[None] + math.log(2 * math.pi),
                                    axis=-1)
        return log_normal - math.log(self.num_components)

    def log_prob(self, w: jax.Array) -> jax.Array:
        """log p(w) for w [B, D]: [B]."""
        return jax.nn.logsumexp(self.component_log_probs(w), axis=-1)

    def sample(self, rng: jax.Array, num: int) -> jax.Array:
        """num draws of w: [num, D]."""
        rng_k, rng_e = jax.random.split(rng)
        k = jax.random.randint(rng_k, (num,), 0, self.num_components)
        eps = jax.random.normal(rng_e, (num, self.w_dim))
        return self.means[k] + jnp.exp(self.log_scales[k]) * eps

    __call__ = log_prob


def kl_estimate(log_prior_w: jax.Array, logvar: jax.Array) -> jax.Array:
    """One-draw KL(q(w|x) || p(w)) [B] from log p(w) [B] at w ~ q(w|x) and q's logvar [B, D].

    With a bound -log p(w) <= B(w) in place of -log p(w) (log_prior_w = -B(w)), an upper bound
    on the KL in expectation.
    """
    return -gaussian_entropy(logvar) - log_prior_w
