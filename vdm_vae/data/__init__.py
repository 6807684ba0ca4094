"""Input pipeline: in-memory image data sets and the batches that feed training."""

from vdm_vae.data.batching import check_batch_size, eval_batches, train_batches
from vdm_vae.data.sources import SOURCES, Dataset, load_dataset

__all__ = ["SOURCES", "Dataset", "check_batch_size", "eval_batches", "load_dataset",
           "train_batches"]
