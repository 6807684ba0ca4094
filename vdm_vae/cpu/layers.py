"""The U-Net's 3x3 convolution and Dense: flax's parameters and maths, faster on XLA:CPU.

Two changes of formulation, neither of which changes what is computed:

1. Channel parts. An up block reads concat([h, skip], -1). Forming that tensor copies both
   arrays on every step, its gradient is split apart again, and XLA:CPU transposes the
   wide tensor for the kernel gradients. These layers take the parts instead: a convolution
   is the sum of the parts' convolutions with their slices of the kernel, a Dense the sum
   of the parts' products (GroupNorm does the same in vdm_vae/cpu/group_norm.py). Results equal
   those on the concatenation up to the order of float additions.
2. Kernel gradient of Dense. For y = x . kernel on x [..., I], jax's autodiff forms the
   kernel gradient as dot(g, x) and a transpose, which XLA:CPU folds in by copying the
   incoming gradient g channel-major: a transposing loop fused with g's producers
   (GroupNorm's backward, the skip split) that reads them a cache line per element. As
   x^T g over the leading axes, XLA copies x, already in memory, and runs the product on
   YNNPACK: an SVDM nin_shortcut kernel gradient went from 85 to 52 ms on 2 AMD EPYC cores.

Both are CPU formulations (vdm_vae/cpu/platforms.py): off CPU the parts are concatenated once and
the layers compute as flax's do, with jax's own gradient.
"""

import functools
import operator
from typing import Callable, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from vdm_vae.cpu import platforms

Parts = Union[jax.Array, Sequence[jax.Array]]  # an array, or a list/tuple of channel parts


def as_parts(x: Parts) -> Tuple[jax.Array, ...]:
    """The parts of x: the list or tuple as a tuple, or (x,) for one array."""
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def parts_for_platform(x: Parts) -> Tuple[jax.Array, ...]:
    """as_parts(x) on CPU; elsewhere the parts' concatenation as the one part."""
    parts = as_parts(x)
    if len(parts) > 1 and not platforms.cpu_formulations():
        return (jnp.concatenate(parts, axis=-1),)
    return parts


def channel_slices(parts: Sequence[jax.Array]):
    """(start, stop) of each part's channels in the concatenation."""
    start = 0
    for p in parts:
        yield start, start + p.shape[-1]
        start += p.shape[-1]


def _sum_over_parts(parts: Sequence[jax.Array], apply: Callable) -> jax.Array:
    """The sum over the parts of apply(part, start, stop), without a leading 0."""
    return functools.reduce(operator.add, (apply(p, a, b)
                                           for p, (a, b) in zip(parts, channel_slices(parts))))


@jax.custom_vjp
def contract_last(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., I] . kernel [I, O] -> [..., O], with the kernel gradient as x^T g."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _contract_last_fwd(x, kernel):
    return contract_last(x, kernel), (x, kernel)


def _contract_last_bwd(residuals, g):
    x, kernel = residuals
    leading = tuple(range(x.ndim - 1))
    dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))  # [..., I]
    dkernel = lax.dot_general(x, g, ((leading, leading), ((), ())))  # [I, O]
    return dx, dkernel


contract_last.defvjp(_contract_last_fwd, _contract_last_bwd)


def contract_last_for_platform(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., I] . kernel [I, O]: contract_last on CPU, jax's autodiff of the product elsewhere."""
    if platforms.cpu_formulations():
        return contract_last(x, kernel)
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


class Dense(nn.Module):
    """nn.Dense(features) on x [..., I] or on its channel parts. Params kernel [I, O], bias [O]."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = nn.linear.default_kernel_init
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Parts) -> jax.Array:
        """Args: x [..., I], or parts [..., I_k] with sum I_k = I. Returns: [..., features]."""
        parts = parts_for_platform(x)
        in_features = sum(p.shape[-1] for p in parts)
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features),
                            jnp.float32)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
                if self.use_bias else None)
        *parts, kernel, bias = promote_dtype(*parts, kernel, bias, dtype=self.dtype)
        y = _sum_over_parts(parts, lambda p, a, b: contract_last_for_platform(p, kernel[a:b]))
        return y + bias if bias is not None else y


class Conv3x3(nn.Module):
    """nn.Conv(features, (3, 3)) ('SAME', stride 1) on x [B, H, W, C] or on its channel parts.

    Params kernel [3, 3, C, features], bias [features].
    """

    features: int
    kernel_init: Callable = nn.linear.default_kernel_init
    dtype: Optional[jnp.dtype] = None

    @nn.compact
    def __call__(self, x: Parts) -> jax.Array:
        """Args: x [B, H, W, C], or parts [B, H, W, C_k] with sum C_k = C.
        Returns: [B, H, W, features]."""
        parts = parts_for_platform(x)
        in_features = sum(p.shape[-1] for p in parts)
        kernel = self.param("kernel", self.kernel_init, (3, 3, in_features, self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        *parts, kernel, bias = promote_dtype(*parts, kernel, bias, dtype=self.dtype)
        y = _sum_over_parts(parts, lambda p, a, b: lax.conv_general_dilated(
            p, kernel[:, :, a:b], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        return y + bias
