"""Representation quality: classification accuracy of simple probes trained on features.

Features are any [N, F] arrays (encoder means, pixels, ...) with integer class labels [N].
"""


import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _check_split(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Converts one (features, labels) split; raises ValueError on bad shapes or values."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}_x must have shape [N, F] with N, F >= 1, got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}_x must be finite, got NaN or infinite entries.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name}_y must have shape [{x.shape[0]}] (one label per row of "
                         f"{name}_x), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}_y must hold integer class labels, got dtype {y.dtype}.")
    return x, y


def _check_splits(train_x, train_y, test_x, test_y) -> tuple[np.ndarray, ...]:
    """Validates both splits and that they have the same feature dimension."""
    train_x, train_y = _check_split(train_x, train_y, "train")
    test_x, test_y = _check_split(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"test_x has {test_x.shape[1]} features, but train_x has "
                         f"{train_x.shape[1]}; they must match.")
    return train_x, train_y, test_x, test_y


def linear_probe_accuracy(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                          test_y: npt.ArrayLike, max_train: int | None = None,
                          max_iter: int = 300, seed: int = 0) -> float:
    """Test accuracy of `linear_probe_correct` (same arguments), in [0, 1]."""
    return float(np.mean(linear_probe_correct(train_x, train_y, test_x, test_y, max_train,
                                              max_iter, seed)))


def linear_probe_correct(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                         test_y: npt.ArrayLike, max_train: int | None = None,
                         max_iter: int = 300, seed: int = 0) -> np.ndarray:
    """Which test points a multinomial logistic regression on standardised features gets right.

    Features are standardised with the training mean and standard deviation, then an
    L2-regularised (C = 1) softmax regression is fitted with L-BFGS. On 60,000 x 784 MNIST
    pixels this takes roughly a minute on two CPU cores; `max_train` trades accuracy for time.

    Args:
        train_x: training features [N, F].
        train_y: integer training labels [N].
        test_x: test features [M, F].
        test_y: integer test labels [M].
        max_train: if set and N exceeds it, a random subset of max_train training rows is used.
        max_iter: L-BFGS iteration limit, >= 1.
        seed: seed for the training subset.

    Returns:
        [M] bool, True where the test point is classified correctly.
    """
    train_x, train_y, test_x, test_y = _check_splits(train_x, train_y, test_x, test_y)
    if max_train is not None and (not isinstance(max_train, (int, np.integer)) or max_train < 2):
        raise ValueError(f"max_train must be None or an integer >= 2, got {max_train!r}.")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    if max_train is not None and train_x.shape[0] > max_train:
        keep = np.random.default_rng(seed).choice(train_x.shape[0], max_train, replace=False)
        train_x, train_y = train_x[keep], train_y[keep]
    if np.unique(train_y).size < 2:
        raise ValueError("train_y must contain at least 2 classes, got "
                         f"{np.unique(train_y).tolist()}.")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(train_x.astype(np.float32), train_y)
    return probe.predict(test_x.astype(np.float32)) == test_y


def mlp_probe_correct(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                      test_y: npt.ArrayLike, hidden: int = 256, seed: int = 0) -> np.ndarray:
    """Which test points a one-hidden-layer MLP on standardised features gets right.

    Not a measure of linear readability: beside `linear_probe_correct` it tells whether what a
    linear probe misses is in the features at all. ReLU layer of `hidden` units, Adam, early
    stopping on 10% of the training rows (at most 200 epochs), fixed seed.

    Args:
        train_x, test_x: features [N, F], [M, F].
        train_y, test_y: integer labels [N], [M].
        hidden: hidden units, >= 1.
        seed: seed of the initialisation, the batches and the held-out rows.

    Returns:
        [M] bool, True where the test point is classified correctly.
    """
    train_x, train_y, test_x, test_y = _check_splits(train_x, train_y, test_x, test_y)
    if not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}.")
    probe = make_pipeline(StandardScaler(), MLPClassifier(
        (int(hidden),), max_iter=200, early_stopping=True, random_state=seed))
    probe.fit(train_x.astype(np.float32), train_y)
    return probe.predict(test_x.astype(np.float32)) == test_y


def knn_accuracy(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                 test_y: npt.ArrayLike, k: int = 5) -> float:
    """Test accuracy of `knn_correct` (same arguments), in [0, 1]."""
    return float(np.mean(knn_correct(train_x, train_y, test_x, test_y, k)))


def knn_correct(train_x: npt.ArrayLike, train_y: npt.ArrayLike, test_x: npt.ArrayLike,
                test_y: npt.ArrayLike, k: int = 5) -> np.ndarray:
    """Which test points a k-nearest-neighbour classifier (Euclidean, majority vote) gets right.

    Features are used as given (not standardised), so distances are those of the feature space.

    Args:
        train_x: training features [N, F].
        train_y: integer training labels [N].
        test_x: test features [M, F].
        test_y: integer test labels [M].
        k: number of neighbours, 1 <= k <= N.

    Returns:
        [M] bool, True where the test point is classified correctly.
    """
    train_x, train_y, test_x, test_y = _check_splits(train_x, train_y, test_x, test_y)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= train_x.shape[0]:
        raise ValueError(f"k must be an integer in [1, {train_x.shape[0]}] (the number of "
                         f"training points), got {k!r}.")
    classifier = KNeighborsClassifier(n_neighbors=int(k))
    classifier.fit(train_x.astype(np.float32), train_y)
    return classifier.predict(test_x.astype(np.float32)) == test_y


def pca_features(train_x: npt.ArrayLike, test_x: npt.ArrayLike, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Both splits projected on the top-k principal components of the training split.

    The linear baseline for a learned code of size k: what a linear compression of the
    same inputs to as many numbers gives a probe.

    Args:
        train_x: training inputs [N, F] (fits the components and the centre).
        test_x: test inputs [M, F].
        k: number of components, 1 <= k <= min(N, F).

    Returns:
        (train [N, k], test [M, k]) float32.
    """
    train_x = np.asarray(train_x, np.float64)
    test_x = np.asarray(test_x, np.float64)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x and test_x must be [N, F] and [M, F], got {train_x.shape} "
                         f"and {test_x.shape}.")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= min(train_x.shape):
        raise ValueError(f"k must be an integer in [1, {min(train_x.shape)}], got {k!r}.")
    centre = train_x.mean(axis=0)
    centred = train_x - centre
    # The principal axes are the covariance's eigenvectors of the largest eigenvalues.
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :k]
    return (centred @ axes).astype(np.float32), ((test_x - centre) @ axes).astype(np.float32)
