"""Agreement of unsupervised clusters with class labels."""

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment


def matched_cluster_correct(clusters: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Whether each example's cluster maps to its label, under the one-to-one map of clusters
    to labels that maximises the agreement (Hungarian; clusters beyond the number of labels,
    or labels beyond the clusters, stay unmatched and count as wrong).

    Args: clusters [N] and labels [N], non-negative ints. Returns: bool [N].
    """
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape or clusters.ndim != 1:
        raise ValueError(f"clusters and labels must both have shape [N], got {clusters.shape} "
                         f"and {labels.shape}.")
    if len(clusters) and (clusters.min() < 0 or labels.min() < 0):
        raise ValueError("clusters and labels must be non-negative ints.")
    counts = np.zeros((clusters.max(initial=0) + 1, labels.max(initial=0) + 1), np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    label_of = np.full(counts.shape[0], -1)
    label_of[rows] = cols
    return label_of[clusters] == labels
