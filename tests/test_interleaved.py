"""benchmarks/interleaved.py: the turn-taking protocol and its interval."""

import json
import math

import pytest
from conftest import load_experiment


def _module():
    return load_experiment("interleaved", "benchmarks")


def _coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n+1-k)) for n independent draws: 1 - 2 P(Binomial(n, 1/2) < k)."""
    return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n


@pytest.mark.parametrize("n", [6, 7, 12, 20, 41])
def test_median_interval_is_the_narrowest_with_95_percent_coverage(n):
    il = _module()
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    lo, hi = il.median_interval(values)
    k = int(lo)  # values are 1..n, so x_(k) = k
    assert hi == n + 1 - k
    assert _coverage(n, k) >= 0.95
    assert _coverage(n, k + 1) < 0.95  # one step narrower would cover less than 95%


def test_median_interval_is_unbounded_below_six_values():
    assert _module().median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == (-math.inf, math.inf)


def test_pairs_alternate_abba_so_a_linear_drift_weighs_on_both():
    il = _module()
    sequence = [p for pair in il.order(4) for p in pair]
    assert sequence == ["study", "vdm_vae", "vdm_vae", "study"] * 2
    # a machine slowing by 1% per block: both programs' positions average out over ABBA
    position = {name: sum(i for i, p in enumerate(sequence) if p == name) for name in
                ("study", "vdm_vae")}
    assert position["study"] == position["vdm_vae"]


def test_summary_and_verdict_from_blocks():
    il = _module()
    blocks = []
    for i in range(8):
        drift = 1 + 0.1 * i  # the machine slows down; each pair's ratio stays 2.0 or 1.6
        ratio = 2.0 if i % 2 == 0 else 1.6
        blocks += [{"pair": i, "program": "study", "seconds": [ratio * drift] * 3},
                   {"pair": i, "program": "vdm_vae", "seconds": [drift, drift, 9.0]}]
    row = il.summarise(blocks)
    assert row["pair_ratios"] == pytest.approx([2.0, 1.6] * 4)
    assert row["speedup"] == pytest.approx(1.8)
    assert (row["speedup_lo"], row["speedup_hi"]) == pytest.approx((1.6, 2.0))
    assert il.verdict(row) == ">= 1.5x"
    assert il.verdict(dict(row, speedup_lo=1.2)) == "undecided"
    assert il.verdict(dict(row, speedup_lo=1.0, speedup_hi=1.4)) == "< 1.5x"


def test_smoke_run_takes_turns_and_writes_its_report(tmp_path):
    il = _module()
    out = tmp_path / "interleaved.md"
    il.main(["--smoke", "--rows", "mvdm:none", "--pairs", "6", "--steps", "2", "--gap", "0",
             "--out", str(out)])
    report = json.loads((tmp_path / "interleaved.json").read_text())
    row, = report["rows"]
    assert [b["program"] for b in row["blocks"]] == [p for pair in il.order(6) for p in pair]
    assert all(len(b["seconds"]) == 2 and min(b["seconds"]) > 0 for b in row["blocks"])
    assert row["speedup_lo"] <= row["speedup"] <= row["speedup_hi"]
    assert "| MVDM |" in out.read_text()


def test_bad_arguments_are_named():
    il = _module()
    with pytest.raises(SystemExit):
        il.main(["--smoke", "--pairs", "5"])
    with pytest.raises(SystemExit):
        il.main(["--smoke", "--rows", "xvdm:none"])
    with pytest.raises(SystemExit):
        il.main(["--rows", "mvdm:none"])  # no --study


def test_carry_over_splits_each_programs_blocks_by_what_ran_before():
    il = _module()
    seconds = {("study", True): 1.0, ("study", False): 1.5, ("vdm_vae", True): 0.5,
               ("vdm_vae", False): 0.9}
    sequence = [p for pair in il.order(4) for p in pair]
    blocks = [{"program": sequence[0], "seconds": [9.0]}]  # the first block follows nothing
    for prev, cur in zip(sequence, sequence[1:]):
        blocks.append({"program": cur, "seconds": [seconds[cur, prev == cur]] * 3})
    assert il.carry_over(blocks) == {"study after itself": 1.0, "study after the other": 1.5,
                                     "vdm_vae after itself": 0.5,
                                     "vdm_vae after the other": 0.9}
