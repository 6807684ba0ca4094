"""vdm_vae.bench: FLOPs per optimiser step do not depend on how the steps are run."""

import argparse

from conftest import tiny_config

from vdm_vae import bench


def test_train_flops_per_step_are_the_same_with_a_scan_over_substeps():
    from configs import base

    config = base.make(vdm="mvdm", arg="smoke")
    model_config = tiny_config("none", attention_impl="per_example")
    rows = {s: bench.bench_train(model_config, config, argparse.Namespace(
        substeps=s, repeats=1, batch=config.training.batch_size_train)) for s in (1, 2)}
    assert rows[1]["train_flops"] > 0
    assert rows[2]["train_flops"] == rows[1]["train_flops"]  # XLA counts a scan body once
    assert all(r["images_per_s"] > 0 for r in rows.values())
