"""Learning-curve metrics for the periodic evaluation: cheap, on fixed images and fixed draws.

Every evaluation of a run uses the same test images, the same (t, eps) draws and the same probe
split, so that a change along the curve is the model's, not the draws'.
"""

import time
from typing import Dict

import jax

from vdm_vae.metrics import collapse
from vdm_vae.model.config import ModelConfig
from vdm_vae.sampling import posterior


def encoder_metrics(params, dataset, config: ModelConfig, num_train: int, num_test: int,
                    batch_size: int) -> Dict[str, float]:
    """KL of w, active units and a linear probe on mu(x), on the first images of each split.

    Args:
      params: {'params': ...} EMA parameters of a conditional model with encoder kind "conv".
      dataset: vdm_vae.data Dataset with labels.
      num_train, num_test: probe training and test images (the first of each split).
    Returns:
      {'kl_w_nats', 'active_units', 'probe_linear_acc', 'probe_seconds'}.
    """
    # scikit-learn (about 1.5 s to import) only when a run evaluates, not at every start.
    from vdm_vae.metrics import probes

    start = time.time()
    train_x = dataset.train_images[:num_train]
    test_x = dataset.test_images[:num_test]
    mean_train, _ = posterior(params, train_x, config, batch_size)
    mean_test, logvar_test = posterior(params, test_x, config, batch_size)
    kl = collapse.kl_per_dim(mean_test, logvar_test).sum(axis=1).mean()
    active, _ = collapse.active_units(mean_test)
    acc = probes.linear_probe_accuracy(mean_train, dataset.train_labels[:num_train], mean_test,
                                       dataset.test_labels[:num_test], max_iter=200)
    return {"kl_w_nats": float(kl), "active_units": float(active),
            "probe_linear_acc": float(acc), "probe_seconds": time.time() - start}


def has_encoder_metrics(config: ModelConfig, dataset) -> bool:
    """The encoder metrics apply to models with a (time-free) encoder and labelled data."""
    return (config.encoder.single_code and dataset.train_labels is not None
            and dataset.test_labels is not None)


def fixed_eval_key(seed: int) -> jax.Array:
    """The key of every periodic evaluation of a run: the same draws at every step."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)
