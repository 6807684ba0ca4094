"""experiments/side_by_side.py: the verdict per row and its report."""

from conftest import load_experiment


def _module():
    return load_experiment("side_by_side")


def _row(study_s, ours_s, gflop, best):
    return {"size": "svdm", "encoder": "oe", "study_train_s": study_s, "vdm_vae_train_s": ours_s,
            "speedup": study_s / ours_s, "study_reverse_s": 1.0, "vdm_vae_reverse_s": 0.5,
            "gflop_per_step": gflop, "best_rate_gflop_per_s": best, "floor_s": gflop / best,
            "max_speedup": study_s * best / gflop, "study_gflop_per_s": gflop / study_s,
            "vdm_vae_gflop_per_s": gflop / ours_s, "torch": "x", "torch_threads": 2,
            "rates_gflop_per_s": {"xla_matmul": best, "xla_conv": 1.0, "torch_matmul": 1.0,
                                  "torch_conv": 1.0}}


def test_verdict_separates_reached_impossible_and_missed():
    sbs = _module()
    assert sbs.verdict(_row(3.0, 1.5, 100.0, 100.0)).startswith("reached (2.00x)")
    # 1,000 GFLOP at 100 GFLOP/s is 10 s at best: 13 / 10 = 1.3 < 1.5
    impossible = sbs.verdict(_row(13.0, 12.0, 1000.0, 100.0))
    assert impossible.startswith("cannot reach 1.5x") and "= 1.30" in impossible
    # floor 5 s: 1.5x (8.67 s) needs 115 GFLOP/s, 58% of the best rate
    missed = sbs.verdict(_row(13.0, 12.0, 1000.0, 200.0))
    assert missed.startswith("not reached") and "115 GFLOP/s" in missed and "58%" in missed


def test_markdown_has_one_line_per_row_and_the_json():
    sbs = _module()
    rows = [_row(3.0, 1.5, 100.0, 100.0), _row(13.0, 12.0, 1000.0, 100.0)]
    text = sbs.markdown(rows, "python experiments/side_by_side.py --study S")
    assert text.count("| svdm | oe | 3.000 | 1.500 | 2.00x |") == 1
    assert text.count("| svdm | oe | 13.000 | 12.000 | 1.08x |") == 1
    assert "`python experiments/side_by_side.py --study S`" in text
