"""Evaluation figures as PNG: embeddings, w-usage profile, KL per dimension, reconstructions."""

from typing import Dict, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vdm_vae.runtime import atomic  # noqa: E402


def _save(fig, path: str):
    try:
        with atomic.replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def _embed_2d(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """[N, D] -> [N, 2] by PCA or t-SNE (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(x)


def plot_embeddings(codes: Dict[str, np.ndarray], labels: Optional[np.ndarray], path: str,
                    method: str):
    """One scatter per encoder (e.g. trained vs random) of mu(x) [N, D], coloured by label."""
    fig, axes = plt.subplots(1, len(codes), figsize=(5 * len(codes), 5), squeeze=False)
    for ax, (name, x) in zip(axes[0], codes.items()):
        xy = _embed_2d(np.asarray(x, np.float64), method)
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=3)
        ax.set_title(f"{method.upper()} of mu(x): {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    if labels is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="label")
    _save(fig, path)


def plot_w_usage(t_bins: Sequence[float], curves: Dict[str, Sequence[float]], path: str):
    """Diffusion loss (bits/dim) per time bin for each way of choosing w."""
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 4))
    for name, values in curves.items():
        ax.plot(t_bins, values, marker="o", ms=3, label=name)
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("diffusion loss at t (bits/dim)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("diffusion loss by time")
    base = np.asarray(curves["posterior"])
    for name, values in curves.items():
        if name != "posterior":
            ax_gap.plot(t_bins, np.asarray(values) - base, marker="o", ms=3,
                        label=f"{name} - posterior")
    ax_gap.axhline(0.0, color="k", lw=0.5)
    ax_gap.set_xlabel("diffusion time t")
    ax_gap.set_ylabel("extra loss without the right w (bits/dim)")
    ax_gap.legend()
    ax_gap.set_title("how much the decoder uses w")
    _save(fig, path)


def plot_kl_per_dim(kl_per_dim: np.ndarray, path: str, free_bits: float = 0.0):
    """Mean KL (nats) of each dimension of w, sorted."""
    kl = np.sort(np.asarray(kl_per_dim))[::-1]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(np.arange(len(kl)), kl, width=1.0)
    if free_bits > 0:
        ax.axhline(free_bits, color="r", lw=0.8, label=f"free bits {free_bits}")
        ax.legend()
    ax.set_xlabel("dimension of w (sorted)")
    ax.set_ylabel("KL(q(w_d|x) || N(0,1)) (nats)")
    ax.set_title(f"KL per dimension, total {kl.sum():.2f} nats")
    _save(fig, path)


def plot_reconstructions(inputs: np.ndarray, trajectory: np.ndarray, path: str):
    """Rows: the input, z_1 noise, then evenly spaced reverse steps conditioned on its w.

    Args:
      inputs: uint8 [R,H,W,C].
      trajectory: [R,K,H,W,C] float images in data space, first column z_1, last x.
    """
    rows, cols = trajectory.shape[0], trajectory.shape[1] + 1
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1), squeeze=False)
    for r in range(rows):
        tiles = [inputs[r].astype(np.float32) / 255.0] + [
            np.clip((trajectory[r, k] + 1.0) / 2.0, 0.0, 1.0) for k in range(cols - 1)]
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=7)
    axes[0, 1].set_title("z_1", fontsize=7)
    axes[0, -1].set_title("x", fontsize=7)
    _save(fig, path)
