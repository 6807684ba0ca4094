"""benchmarks.bench: the FLOPs behind the MFU column, in process and from a CPU child."""

import argparse

from conftest import tiny_config

from benchmarks import bench


def test_flops_are_those_of_the_step_with_batched_attention_whatever_the_row_runs():
    from configs import base

    config = base.make(vdm="mvdm", arg="smoke")
    batch = config.training.batch_size_train
    counts = {impl: bench.count_flops(tiny_config("conv", attention_impl=impl), config, batch)
              for impl in ("per_example", "batched")}
    assert counts["batched"]["train_flops"] > counts["batched"]["reverse_step_flops"] > 0
    assert counts["per_example"] == counts["batched"]  # lax.map's body would count once
    rows = {s: bench.bench_train(tiny_config("none"), config, argparse.Namespace(
        substeps=s, repeats=1, batch=batch)) for s in (1, 2)}
    assert all(r["images_per_s"] > 0 and "train_flops" not in r for r in rows.values())


def test_a_cpu_child_counts_the_same_flops_as_this_process():
    """The fallback for backends whose cost analysis gives no FLOPs (a GPU's)."""
    args = bench.parse_args(["--smoke", "--batch", "4"])
    model_config, config = bench._configs("mvdm", "oe", "float32", args)
    child = bench.flops_on_cpu("mvdm:oe:float32", args)
    assert child.pop("flops_counted_on") == "cpu"
    assert child == bench.count_flops(model_config, config, 4)
