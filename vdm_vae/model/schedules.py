"""Noise schedules gamma(t) = log SNR^-1(t), monotone in t in [0, 1]."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vdm_vae.model.config import ModelConfig


def constant_init(value: float):
    """Initialiser that fills a parameter with `value`."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return value * jnp.ones(shape, dtype)

    return init


class FixedLinearSchedule(nn.Module):
    """gamma(t) = gamma_min + (gamma_max - gamma_min) t, no parameters."""

    config: ModelConfig

    def __call__(self, t: jax.Array) -> jax.Array:
        c = self.config
        return c.gamma_min + (c.gamma_max - c.gamma_min) * t


class ScalarSchedule(nn.Module):
    """gamma(t) = b + |w| t, with b = gamma_min and w = gamma_max - gamma_min at init."""

    config: ModelConfig

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        c = self.config
        w = self.param("w", constant_init(c.gamma_max - c.gamma_min), (1,))
        b = self.param("b", constant_init(c.gamma_min), (1,))
        return b + jnp.abs(w) * t


class DenseMonotone(nn.Dense):
    """Dense layer with |kernel|, hence increasing in every input."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (inputs.shape[-1], self.features))
        y = inputs @ jnp.abs(kernel)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,))
        return y


class NNetSchedule(nn.Module):
    """Learnable monotone network: a linear part plus a 1024-unit sigmoid MLP."""

    config: ModelConfig
    n_features: int = 1024

    def setup(self):
        c = self.config
        self.l1 = DenseMonotone(1, kernel_init=constant_init(c.gamma_max - c.gamma_min),
                                bias_init=constant_init(c.gamma_min))
        self.l2 = DenseMonotone(self.n_features, kernel_init=nn.initializers.normal())
        self.l3 = DenseMonotone(1, kernel_init=nn.initializers.normal(), use_bias=False)

    def __call__(self, t: jax.Array) -> jax.Array:
        """Args: t scalar or [B]. Returns: gamma of shape [1] or [B]."""
        t = jnp.reshape(jnp.asarray(t, jnp.float32), (-1, 1))
        h = self.l1(t)
        g = self.l2(2.0 * (t - 0.5))
        g = 2.0 * (nn.sigmoid(g) - 0.5)
        h = h + self.l3(g) / self.n_features
        return jnp.squeeze(h, axis=-1)


def make_schedule(config: ModelConfig, name: str = "gamma") -> nn.Module:
    """The schedule module for `config.gamma_type`."""
    kinds = {"fixed": FixedLinearSchedule, "learnable_scalar": ScalarSchedule,
             "learnable_nnet": NNetSchedule}
    return kinds[config.gamma_type](config, name=name)
