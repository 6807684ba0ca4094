"""Single-head dot-product attention over all positions, in two equivalent formulations.

"batched" forms the [B, N, N] weights of the whole batch at once, and autodiff gives the
backward pass. "per_example" maps over the batch, and its backward pass is written out: the
forward keeps only the output and each query's log-sum-exp of the logits, and the backward
recomputes the weights from them in one pass (exp(logits - logsumexp)) instead of
differentiating through softmax, as FlashAttention does. Each example's [N, N] weights then
stay in cache and few passes go over them. At 28 x 28 (N = 784), batch 64, float32, on 2
AMD EPYC cores (`python experiments/attention_speed.py`), forward + backward takes 131 ms
with 16 channels and 276 ms with 64, against 233 / 342 ms batched (PyTorch's
scaled_dot_product_attention: 92 / 234 ms). In a whole train step the gain is smaller, as
other work runs beside the attention. On accelerators the batched form is the fast one.
"auto" picks per platform (vdm_vae/cpu/platforms.py).

jax.nn.dot_product_attention is not used: its XLA path computes what "batched" does, and its
cuDNN path (the fused one) takes only float16 / bfloat16 inputs, so it would change the
float32 numbers. The study's U-Nets attend only in their mid block (`with_attention=False`),
as does the encoder; `model.with_attention=True` adds attention to the down and up blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vdm_vae.cpu import platforms
from vdm_vae.model.config import ATTENTION_IMPLS


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
    return jax.lax.map(lambda qkv: _attend_saving_lse(*qkv), (q, k, v))


def _logits(q: jax.Array, k: jax.Array) -> jax.Array:
    """q k^T / sqrt(C) in float32: [N, C] x [N, C] -> [N, N]."""
    return jnp.einsum("qc,kc->qk", q.astype(jnp.float32), k.astype(jnp.float32)) / np.sqrt(
        q.shape[-1])


def _forward(q, k, v):
    """(softmax(logits) v [N, C] in v's dtype, logsumexp of each query's logits [N, 1])."""
    logits = _logits(q, k)
    peak = jnp.max(logits, axis=-1, keepdims=True)
    unnormalised = jnp.exp(logits - peak)
    total = jnp.sum(unnormalised, axis=-1, keepdims=True)
    out = jnp.einsum("qk,kc->qc", unnormalised.astype(v.dtype), v).astype(jnp.float32) / total
    return out.astype(v.dtype), peak + jnp.log(total)


@jax.custom_vjp
def _attend_saving_lse(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """_attend of one example [N, C]; the backward pass recomputes the weights (see above)."""
    return _forward(q, k, v)[0]


def _attend_fwd(q, k, v):
    out, lse = _forward(q, k, v)
    return out, (q, k, v, out, lse)


def _attend_bwd(residuals, d_out):
    q, k, v, out, lse = residuals
    f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
    weights = jnp.exp(_logits(q, k) - lse)  # softmax(logits), [N, N]
    d_v = jnp.einsum("qk,qc->kc", weights, f32(d_out))
    d_weights = jnp.einsum("qc,kc->qk", f32(d_out), f32(v))
    # Softmax's backward: w * (dw - sum_k w dw), where sum_k w dw = <d_out, out> per query.
    d_logits = weights * (d_weights - jnp.sum(f32(d_out) * f32(out), axis=-1, keepdims=True))
    d_logits = d_logits / np.sqrt(q.shape[-1])
    d_q = jnp.einsum("qk,kc->qc", d_logits, f32(k))
    d_k = jnp.einsum("qk,qc->kc", d_logits, f32(q))
    return d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype)


_attend_saving_lse.defvjp(_attend_fwd, _attend_bwd)
