"""The markdown table of `python benchmarks/bench.py`: machine, versions, command and rows."""

from typing import List

COLUMNS = (  # (header, key, format)
    ("size", "size", "{}"), ("encoder", "encoder", "{}"), ("dtype", "compute_dtype", "{}"),
    ("attention", "attention", "{}"), ("substeps", "substeps", "{}"),
    ("compile s", "compile_s", "{:.1f}"), ("train step median s", "train_step_median_s", "{:.3f}"),
    ("train step min s", "train_step_min_s", "{:.3f}"), ("images/s", "images_per_s", "{:.1f}"),
    ("GFLOP/step", "train_flops", "{:.1f}"), ("train GFLOP/s", "train_gflop_per_s", "{:.1f}"),
    ("train MFU", "train_mfu", "{:.1%}"),
    ("reverse step median s", "reverse_step_median_s", "{:.4f}"),
    ("reverse step min s", "reverse_step_min_s", "{:.4f}"),
    ("sample GFLOP/s", "sample_gflop_per_s", "{:.1f}"), ("sample MFU", "sample_mfu", "{:.1%}"),
    ("batch at T=1000 s", "sample_T1000_s", "{:.2f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("XLA temp MB", "xla_temp_mb", "{:.0f}"), ("device peak MB", "device_peak_mb", "{:.0f}"),
)


def _cell(row: dict, key: str, fmt: str) -> str:
    if "skipped" in row and key not in ("size", "encoder", "compute_dtype"):
        return "-" if key != "attention" else f"not run: {row['skipped']}"
    value = row.get(key)
    if key == "train_flops" and value is not None:
        value /= 1e9
    if value is None:
        return "-"
    text = fmt.format(value)
    return text + " (extrapolated)" if key == "sample_T1000_s" and row.get(
        "sample_T1000_extrapolated") else text


def _speed(calibrations: List[dict]) -> str:
    return "; ".join(f"at the {c['calibration']}: {c['matmul_gflop_per_s']:.0f} GFLOP/s for a "
                     f"4096 x 4096 float32 matrix product, {c['conv_gflop_per_s']:.0f} GFLOP/s "
                     f"for a 64 -> 64 3x3 convolution at 28 x 28, batch 64, "
                     f"{c['stream_gb_per_s']:.1f} GB/s memory bandwidth" for c in calibrations)


def markdown(rows: List[dict], info: dict, command: str, peak_tflops: float = None) -> str:
    """The results table with the machine, the versions, the command and how to read it."""
    calibrations = [r for r in rows if "calibration" in r]
    rows = [r for r in rows if "calibration" not in r]
    measured = [r for r in rows if "skipped" not in r] or [{}]
    steps = sorted({r["sample_steps_timed"] for r in rows if "sample_steps_timed" in r})
    shape = "x".join(str(n) for n in measured[0].get("image_shape", ()))
    lines = ["# vdm_vae speed", "", f"Command: `{command}`", "",
             f"Machine: {info['cpu']}, {info['cores']} cores available, backend "
             f"{info['backend']} ({', '.join(info['devices'])}); load average at start "
             f"{info['load_avg']}.", ""]
    if calibrations:
        lines += [f"Machine speed (shared machines vary from run to run; compare rows of one "
                  f"table only): {_speed(calibrations)}.", ""]
    lines += [
        f"Versions: python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"flax {info['flax']}. The timed processes ran with "
        f"XLA_FLAGS='{measured[0].get('xla_flags', '')}' and "
        f"GLIBC_TUNABLES='{measured[0].get('glibc_tunables', '')}'.", "",
        f"Batch {measured[0].get('batch')}, {shape}. Train and reverse step: median and minimum "
        f"over repeated runs, compile apart. Sampling a batch at T = 1000 is {steps} reverse "
        "steps timed and scaled to 1000 where marked extrapolated, plus the decoding of z_0. "
        "FLOPs: XLA cost analysis of one lowered step with batched attention"
        + (", counted on the CPU backend (this backend's analysis gives none)."
           if any(r.get("flops_counted_on") == "cpu" for r in measured) else ".")]
    if peak_tflops:
        lines[-1] += (f" MFU: those FLOPs per second over a peak of {peak_tflops:g} TFLOP/s "
                      "for every row, whatever its dtype.")
    lines += ["", "| " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, key, fmt) for _, key, fmt in COLUMNS) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"
