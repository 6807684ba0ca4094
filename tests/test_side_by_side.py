"""experiments/side_by_side.py: the floors and the verdict per row, and its report."""

import pytest
from conftest import load_experiment


def _module():
    return load_experiment("side_by_side")


def _conv(jax_s, torch_s):
    """One 64 -> 64 convolution, 10 GFLOP per direction, present 3 times in the step."""
    directions = ["forward", "input_gradient", "kernel_gradient"]
    return {"input": [64, 28, 28, 64], "kernel": [3, 3, 64, 64], "count": 3, "gflop": 10.0,
            "directions": directions,
            "seconds": {"jax": dict(zip(directions, jax_s)),
                        "torch": dict(zip(directions, torch_s))}}


def _row(study_s, ours_s, gflop, best, libraries_s=0.0, xla_s=0.0):
    return {"size": "svdm", "encoder": "oe", "study_train_s": study_s, "vdm_vae_train_s": ours_s,
            "speedup": study_s / ours_s, "study_reverse_s": 1.0, "vdm_vae_reverse_s": 0.5,
            "gflop_per_step": gflop, "best_rate_gflop_per_s": best, "floor_s": gflop / best,
            "conv_gflop_per_step": 90.0, "best_conv_s": libraries_s, "xla_conv_s": xla_s,
            "rest_s": 0.0, "libraries_floor_s": libraries_s, "xla_floor_s": xla_s,
            "convs": [_conv((0.1, 0.1, 0.2), (0.2, 0.05, 0.1))], "torch": "x",
            "torch_threads": 2, "rates_gflop_per_s": {"xla_matmul": best, "xla_conv": 1.0,
                                                      "torch_matmul": 1.0, "torch_conv": 1.0}}


def test_conv_floors_take_the_faster_library_per_direction():
    sbs = _module()
    floors = sbs.conv_floors([_conv((0.1, 0.1, 0.2), (0.2, 0.05, 0.1))], gflop=190.0,
                             matmul_rate=100.0)
    assert floors["conv_gflop_per_step"] == pytest.approx(90.0)
    assert floors["xla_conv_s"] == pytest.approx(3 * 0.4)
    assert floors["best_conv_s"] == pytest.approx(3 * (0.1 + 0.05 + 0.1))
    assert floors["rest_s"] == pytest.approx(1.0)  # the other 100 GFLOP at 100 GFLOP/s
    assert floors["libraries_floor_s"] == pytest.approx(1.75)
    assert floors["xla_floor_s"] == pytest.approx(2.2)


def test_verdict_names_the_loosest_floor_that_rules_the_target_out():
    sbs = _module()
    assert sbs.verdict(_row(3.0, 1.5, 100.0, 100.0)).startswith("reached (2.00x)")
    # 1,000 GFLOP at 100 GFLOP/s is 10 s at best: 13 / 10 = 1.3 < 1.5
    machine = sbs.verdict(_row(13.0, 12.0, 1000.0, 100.0, 11.0, 12.0))
    assert machine.startswith("cannot reach 1.5x on this machine") and "= 1.30" in machine
    # the machine allows 2.6x, the convolutions at the faster library's times 13 / 9.5
    libraries = sbs.verdict(_row(13.0, 12.0, 1000.0, 200.0, 9.5, 10.0))
    assert libraries.startswith("cannot reach 1.5x with XLA's or PyTorch's")
    assert "= 1.37" in libraries
    xla = sbs.verdict(_row(13.0, 12.0, 1000.0, 200.0, 6.0, 9.5))
    assert xla.startswith("cannot reach 1.5x with XLA's convolutions") and "= 1.37" in xla
    missed = sbs.verdict(_row(13.0, 12.0, 1000.0, 200.0, 6.0, 7.0))
    assert missed.startswith("not reached") and "8.67 s" in missed and "7.00 s" in missed


def test_markdown_has_one_line_per_row_its_convolutions_and_the_json():
    sbs = _module()
    rows = [_row(3.0, 1.5, 100.0, 100.0, 1.0, 1.2), _row(13.0, 12.0, 1000.0, 100.0, 11.0, 12.0)]
    text = sbs.markdown(rows, "python experiments/side_by_side.py --study S")
    assert text.count("| svdm | oe | 3.000 | 1.500 | 2.00x |") == 1
    assert text.count("| svdm | oe | 13.000 | 12.000 | 1.08x |") == 1
    # XLA: 10 GFLOP in 0.1 / 0.1 / 0.2 s; PyTorch in 0.2 / 0.05 / 0.1 s
    line = "| svdm | oe | 3x3, 64 -> 64 | 3 | 3 | 100 / 100 / 50 | 50 / 200 / 100 |"
    assert text.count(line) == 2
    assert "`python experiments/side_by_side.py --study S`" in text


def test_verdict_adds_the_rest_of_the_step_as_run_where_it_was_measured():
    sbs = _module()
    row = dict(_row(13.0, 12.0, 1000.0, 200.0, 6.0, 7.0), rest_as_run_s=2.0,
               xla_with_rest_s=9.0)
    # 13 / 1.5 = 8.67 s is above every floor: not reached, with the step's two parts
    text = sbs.verdict(row)
    assert text.startswith("not reached") and "8.67 s" in text
    assert text.endswith("convolutions take 7.00 s alone in XLA, the step without them 2.00 s")
    without = {k: v for k, v in row.items() if k not in ("rest_as_run_s", "xla_with_rest_s")}
    assert sbs.verdict(without).endswith("the XLA floor is 7.00 s")
    line = sbs.markdown([row], "c").split("\n")
    assert any(ln.startswith("| svdm | oe | 13.000 | 12.000 |") and "| 7.000 + 2.000 (1.44x) |"
               in ln for ln in line)
