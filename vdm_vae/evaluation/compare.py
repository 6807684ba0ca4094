"""Compares the bounds of several runs on the same test images with the same draws.

  python -m vdm_vae.evaluation.compare --workdirs=runs/cpu/mvdm,runs/cpu/mvdm_oe \
      --baseline=runs/cpu/mvdm \
      --out=runs/cpu/compare_mvdm.json [--num_images=1000 --draws=4] [--step=2500]

For each run: the bound and its terms with standard errors. For each run against the
baseline: the mean paired difference of every term over the test images, its standard error,
a 95% interval, and the standard error the same difference would have unpaired. Writes the
JSON to --out and a markdown table beside it (.md); prints the table.
"""

import json
import os
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags

from vdm_vae import data as data_lib
from vdm_vae.evaluation import paired
from vdm_vae.metrics import intervals
from vdm_vae.runtime import cli
from vdm_vae.training.checkpoints import load, load_run_config, open_saved


def define_flags():
    """Defines the command's flags (only when run as a command: the module imports anywhere)."""
    flags.DEFINE_list("workdirs", None, "Runs to compare, comma separated.")
    flags.DEFINE_string("baseline", None, "The run every other is compared with.")
    flags.DEFINE_string("out", None, "JSON output (a .md table is written beside it).")
    flags.DEFINE_integer("num_images", None, "Test images (default: the baseline "
                         "config's eval.num_test_images; -1 = all).")
    flags.DEFINE_integer("draws", 4, "Draws of (t, eps, eps_0) per image.")
    flags.DEFINE_integer("seed", paired.EVAL_SEED, "Evaluation seed.")
    flags.DEFINE_integer("batch", None, "Batch size (default: the baseline config's "
                         "training.batch_size_eval).")
    flags.DEFINE_bool("antithetic", True, "Stratify t over an image's draws.")
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate every run at (default: "
                         "each run's newest); see training.checkpoints_keep_period.")
    flags.mark_flags_as_required(["workdirs", "baseline"])


def _step(workdir: str) -> Optional[int]:
    ckpt = open_saved(workdir)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def run_names(workdirs: List[str]) -> Dict[str, str]:
    """Short unique names (folder names, or the paths if two share one) -> workdir."""
    base = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    if len(set(base)) == len(base):
        return dict(zip(base, workdirs))
    return {w: w for w in workdirs}


def summarise(per_image: Dict[str, Dict[str, np.ndarray]], baseline: str) -> dict:
    """Per run, each term's mean interval; per other run, each term's paired difference.

    Args:
      per_image: run name -> term name -> per-image values [N] (same images, same draws).
      baseline: the name of the run the others are compared with.
    """
    base = per_image[baseline]
    runs = {name: {term: intervals.mean_interval(v) for term, v in terms.items()}
            for name, terms in per_image.items()}
    differences = {name: {term: intervals.paired_difference(v, base[term])
                          for term, v in terms.items()}
                   for name, terms in per_image.items() if name != baseline}
    return {"runs": runs, "differences": differences}


def markdown(result: dict) -> str:
    """The comparison as a markdown table (bits/dim)."""
    base = result["baseline"]
    lines = [f"Paired bound comparison: {result['num_images']} test images, {result['draws']} "
             f"draws per image (seed {result['seed']}), baseline `{base}`. Bits/dim; "
             "intervals are 95%.", "",
             f"| run | bpd [95% CI] | se | bpd - bpd({base}) [95% CI] | paired se | "
             "unpaired se |", "|---|---|---|---|---|---|"]
    for name, terms in result["runs"].items():
        row = [name, intervals.format_interval(terms["bpd"]), f"{terms['bpd']['stderr']:.4f}"]
        diff = result["differences"].get(name, {}).get("bpd")
        if diff is None:
            row += ["(baseline)", "-", "-"]
        else:
            row += [intervals.format_interval(diff), f"{diff['stderr']:.4f}",
                    f"{diff['unpaired_stderr']:.4f}"]
        lines.append("| " + " | ".join(row) + " |")
    terms = [t for t in paired.TERMS if t != "bpd"]
    lines += ["", "Paired differences of each term against the baseline:", "",
              "| run | " + " | ".join(terms) + " |", "|---|" + "---|" * len(terms)]
    for name, diffs in result["differences"].items():
        lines.append("| " + " | ".join([name] + [intervals.format_interval(diffs[t])
                                                 for t in terms]) + " |")
    return "\n".join(lines) + "\n"


def compare(workdirs: List[str], baseline: str, num_images: Optional[int] = None,
            draws: int = 4, seed: int = paired.EVAL_SEED, batch_size: Optional[int] = None,
            antithetic: bool = True, step: Optional[int] = None) -> dict:
    """Evaluates every run on the same images with the same draws; see the module docstring.

    Args:
      workdirs: run folders (each once); `baseline` is added if missing.
      baseline: the run folder the others are compared with.
      num_images: first test images to use (None: the baseline config's
        eval.num_test_images; -1: all).
      draws, seed, antithetic: as `paired.per_image_bound`.
      batch_size: None for the baseline config's training.batch_size_eval.
      step: the checkpoint step of every run (None: each run's newest readable one).
    """
    workdirs = list(dict.fromkeys(list(workdirs) + [baseline]))
    names = run_names(workdirs)
    base_name = next(n for n, w in names.items() if w == baseline)
    base_config, base_model = load_run_config(baseline)
    for workdir in names.values():
        config, model = load_run_config(workdir)
        if config["data"] != base_config["data"] or model.image_shape != base_model.image_shape:
            raise ValueError(f"{workdir} was trained on other data than {baseline}: "
                             "only runs on the same data can be compared.")
    num = base_config["eval"]["num_test_images"] if num_images is None else num_images
    batch = batch_size or int(base_config["training"]["batch_size_eval"])
    images = data_lib.load_dataset(base_config["data"]).test_images
    images = images if num is None or num < 0 else images[:num]
    result = {"baseline": base_name, "num_images": len(images), "draws": draws, "seed": seed,
              "antithetic": antithetic, "workdirs": names, "steps": {}, "bpd_is_bound": {}}
    per_image = {}
    for name, workdir in names.items():
        params, model = load(workdir, step)
        result["steps"][name] = _step(workdir) if step is None else step
        result["bpd_is_bound"][name] = not model.encoder.time_conditioned
        per_image[name] = paired.per_image_bound(
            {"params": params}, images, model, draws=draws, batch_size=batch, seed=seed,
            antithetic=antithetic, desc=f"bound of {name}")
    result.update(summarise(per_image, base_name))
    return result


def main(argv):
    del argv
    fl = flags.FLAGS
    result = cli.run_or_exit(lambda: compare(
        fl.workdirs, fl.baseline, fl.num_images, fl.draws, fl.seed, fl.batch, fl.antithetic,
        fl.step))
    table = markdown(result)
    if fl.out:
        os.makedirs(os.path.dirname(os.path.abspath(fl.out)), exist_ok=True)
        with open(fl.out, "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.splitext(fl.out)[0] + ".md", "w") as f:
            f.write(table)
    print(table)


if __name__ == "__main__":
    define_flags()
    app.run(main)
