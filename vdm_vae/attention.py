"""Single-head dot-product attention over all positions, in two equivalent formulations.

"batched" forms the [B, N, N] weights of the whole batch at once. "per_example" maps over
the batch and recomputes each example's [N, N] weights in the backward pass instead of
storing them, so they stay in cache. At 28 x 28 (N = 784) and batch 64, where the batched
weights take 157 MB and every softmax pass over them goes to memory, per_example is 2x
faster on XLA:CPU with 16 channels (forward 108 -> 53 ms, forward + backward 308 -> 157 ms
on one AMD EPYC core) and 1.4x with 64 (174 -> 123 ms, 494 -> 359 ms). On accelerators the
batched form is the fast one. "auto" picks per platform (vdm_vae/platforms.py).

jax.nn.dot_product_attention is not used: its XLA path computes what "batched" does, and its
cuDNN path (the fused one) takes only float16 / bfloat16 inputs, so it would change the
float32 numbers. The study's U-Nets have no attention (`with_attention=False`); the
encoder's mid block and the CIFAR-10 model have.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae import platforms
from vdm_vae.model_config import ATTENTION_IMPLS


def resolve_impl(impl: str) -> str:
    """'auto' -> 'per_example' on CPU, 'batched' elsewhere; other values unchanged."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl {impl!r} is unknown: expected one of {ATTENTION_IMPLS}.")
    if impl == "auto":
        return "per_example" if platforms.cpu_formulations() else "batched"
    return impl


def _attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(C)) v over the last two axes: [..., N, C] -> [..., N, C]."""
    logits = jnp.einsum("...qc,...kc->...qk", q.astype(jnp.float32), k.astype(jnp.float32))
    weights = jax.nn.softmax(logits / np.sqrt(q.shape[-1]), axis=-1).astype(v.dtype)
    return jnp.einsum("...qk,...kc->...qc", weights, v)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, impl: str = "auto") -> jax.Array:
    """softmax(q k^T / sqrt(C)) v, logits in float32, the same numbers with either impl.

    Args:
      q, k, v: [B, N, C] queries, keys and values.
      impl: "auto", "batched" or "per_example" (see the module docstring).
    Returns:
      [B, N, C] in v's dtype.
    """
    if resolve_impl(impl) == "batched":
        return _attend(q, k, v)
    one = jax.checkpoint(lambda qkv: _attend(*qkv), prevent_cse=False)
    return jax.lax.map(one, (q, k, v))
