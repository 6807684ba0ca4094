"""A run's saved per-image bounds, and the pairing of two runs' bounds image by image.

`main.py --mode=eval` saves every test image's bound terms to workdir/eval/BOUND_FILE
(`vdm_vae.evaluation.paired`: the same draws of t and noise for image i in every run evaluated
with the same seed and draws), and `vdm_vae.evaluation.fit_prior` each image's KL bound of w to
the learned prior to workdir/eval/PRIOR_FILE. Two runs' bounds are paired when they were
evaluated alike.
"""

import os
from typing import Dict, Optional

import numpy as np

from vdm_vae.metrics import intervals

BOUND_FILE = "bound_per_image.npz"
PRIOR_FILE = "w_prior_per_image.npz"
TERMS = ("bpd", "bpd_recon", "bpd_prior", "bpd_diff", "bpd_kl_w")


def load(workdir: str) -> Dict[str, np.ndarray]:
    """The arrays of workdir/eval/BOUND_FILE: `seed`, `draws`, `step` (the checkpoint's, in
    files written since it is recorded) and a [N] array per term.

    Raises:
        ValueError: in one line, if the run has no per-image bounds.
    """
    path = os.path.join(workdir, "eval", BOUND_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist: evaluate the run first "
                         "(main.py --mode=eval, or experiments/run_records.py restore).")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def learned_prior_bound(workdir: str, bounds: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
    """Each image's bound [N] with its KL of w to N(0, I) replaced by its KL bound to the
    learned prior (workdir/eval/PRIOR_FILE), or None where the prior was not fitted on the
    same images, or on another step's checkpoint (when both files record their step)."""
    path = os.path.join(workdir, "eval", PRIOR_FILE)
    if "bpd_kl_w" not in bounds or not os.path.exists(path):
        return None
    with np.load(path) as f:
        kl = f["bpd_kl_w_learned_prior"]
        step = int(f["step"]) if "step" in f.files else None
    if kl.shape != bounds["bpd"].shape:
        return None
    if step is not None and "step" in bounds and int(bounds["step"]) != step:
        return None
    return bounds["bpd"] - bounds["bpd_kl_w"] + kl


def check_paired(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], a_name: str,
                 b_name: str):
    """Raises ValueError, in one line, unless runs a and b (`load`'s arrays) were evaluated
    with the same seed and draws on as many images, so that their bounds are paired."""
    for key in ("seed", "draws"):
        if int(a[key]) != int(b[key]):
            raise ValueError(f"{key} differs ({int(a[key])} in {a_name}, {int(b[key])} in "
                             f"{b_name}): the bounds are not paired; evaluate both alike.")
    if a["bpd"].shape != b["bpd"].shape:
        raise ValueError(f"the runs were evaluated on {a['bpd'].shape[0]} and "
                         f"{b['bpd'].shape[0]} test images: the bounds are not paired.")


def paired_terms(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], a_name: str = "a",
                 b_name: str = "b") -> Dict[str, dict]:
    """For each term both runs have, the paired difference a - b over the images
    (`intervals.paired_difference`). Raises ValueError as `check_paired` does."""
    check_paired(a, b, a_name, b_name)
    return {t: intervals.paired_difference(a[t], b[t]) for t in TERMS if t in a and t in b}
