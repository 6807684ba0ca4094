#!/usr/bin/env bash
# The MNIST CPU protocol (configs/mnist_cpu.py, docs/mnist_cpu.md): the runs of $CONFIGS, each
# 5,000 steps at batch 64, then `main.py --mode=eval` on the full test set (probes fitted on
# all 60,000 training images) and, with `fid`, FID of 5,000 samples at T = 100
# (vdm_vae.evaluation.sample_fid). A run's name resolves to its config (experiments/run_grid.py):
# mnist_cpu_uncond -> configs/mnist_cpu.py:uncond, mnist_cpu_mmd_seed2 -> :mmd,seed2.
# The default list: the published runs (uncond, the main run, b1, b1e4; finished ones
# are restored from their records and skipped; the main run, whose record was lost, is
# trained again with its seed 1), then $NEW below.
#
#   experiments/mnist_cpu.sh start     # starts or resumes every run in the background
#   experiments/mnist_cpu.sh status    # step, CPU time and last eval of each run
#   experiments/mnist_cpu.sh stop      # saves a checkpoint in every run and stops
#   experiments/mnist_cpu.sh fid       # FID of every finished run, one worker per core of
#                                      # FID_CORES (default: cores 0 to JOBS-1); FID_NICE=1:
#                                      # the workers yield the cores to a run in training
#   experiments/mnist_cpu.sh collect   # table, curves and figures into experiments/results/
#   experiments/mnist_cpu.sh pilots    # the pilots of the protocol's choices, on core $PILOT_CORE
#   experiments/mnist_cpu.sh collect-pilots  # their curves beside mnist_cpu_uncond's
#
# A pilot is mnist_cpu_uncond with one choice changed, trained for the first PILOT_STEPS steps
# of the same 5,000-step schedule (training.stop_at_step) and evaluated every 250 steps:
# pilot_mvdm (the study's full-resolution MVDM U-Net: 4 blocks of 16 channels, dropout 0.1, no
# Fourier features), pilot_lr2e-4, pilot_lr1e-3 and pilot_lr2e-3 (the peak learning rate; the
# study's is 2e-4). They were made when the protocol's peak learning rate was 5e-4, and each
# pilot names its own, so that they stay what they were; their curves against CPU time are
# compared with the run of that protocol (ROOT=$HOME/.cache/vdm_vae/runs/mnist_cpu_lr5e-4 in
# experiments/results/mnist_cpu_pilots.md). They chose the protocol's 2e-3.
#
# Runs live under $ROOT (default $VDM_VAE_RUNS/mnist_cpu, or ~/.cache/vdm_vae/runs/mnist_cpu),
# outside the work tree, and resume from their last checkpoint on the next `start`, on this
# machine or, from scratch, on a new one. JOBS runs go at once, each pinned to its own core
# (JOBS=1: one run on all cores). `collect` saves each evaluated run's record (its metrics,
# per-image bounds, FID reports and figures; no checkpoints) to $RECORDS, in the work tree;
# `start` and `collect` restore the records of runs that $ROOT lacks, so a finished run is
# neither trained again nor lost from the tables on a new machine.
set -euo pipefail
PYTHON=${PYTHON:-python}  # the interpreter (e.g. a virtual environment's, not activated)
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this work tree's vdm_vae, whatever is installed
ROOT=${ROOT:-${VDM_VAE_RUNS:-$HOME/.cache/vdm_vae/runs}/mnist_cpu}
# The seeds (docs/mnist_cpu.md#seeds), with the levers toward both targets (docs/priors.md:
# the prior learned with the model, AdaGN) among them.
NEW=mnist_cpu_uncond_seed2,mnist_cpu_seed2,mnist_cpu_joint,mnist_cpu_film,mnist_cpu_mmd_seed2
NEW=$NEW,mnist_cpu_uncond_seed3,mnist_cpu_seed3,mnist_cpu_mmd_seed3,mnist_cpu_joint_film
NEW=$NEW,mnist_cpu_joint_c10,mnist_cpu_joint_w128
CONFIGS=${CONFIGS:-mnist_cpu_uncond,mnist_cpu,mnist_cpu_b1,mnist_cpu_b1e4,$NEW}
JOBS=${JOBS:-2}
# FID comes from `fid` (T = 100, one worker per core), not from the evaluation (T = 250, one core).
EVAL_ARGS=${EVAL_ARGS:---config.eval.num_fid_samples=0}
FID_SAMPLES=${FID_SAMPLES:-5000}
FID_STEPS=${FID_STEPS:-100}
FID_CORES=${FID_CORES:-$(seq -s, 0 $((JOBS - 1)))}  # one FID worker per listed core
PILOTS=${PILOTS:-pilot_mvdm,pilot_lr1e-3,pilot_lr2e-4}
PILOT_STEPS=${PILOT_STEPS:-1000}
PILOT_CORE=${PILOT_CORE:-0}
PILOT_SMOKE=${PILOT_SMOKE:-}  # non-empty: the pilots in smoke mode (seconds; a check of the script)
RECORDS=${RECORDS:-experiments/results/mnist_cpu_runs}
PID="$ROOT/runner.pid"
mkdir -p "$ROOT"

restore() { "$PYTHON" experiments/run_records.py restore --root="$ROOT" --records="$RECORDS"; }

running() { [[ -f "$PID" ]] && kill -0 "$(cat "$PID")" 2>/dev/null; }

# FID of each finished run in $CONFIGS: w from N(0, I) and, where fit_prior saved one, from
# the learned prior. Every worker walks the same list; vdm_vae.evaluation.sample_fid shares each set's
# chunks between them and resumes from the chunks on disk.
fid_worker() {
  export OMP_NUM_THREADS=1  # one core per worker, torch included
  # `nice` alone does not yield to other sessions' processes (the kernel shares CPU between
  # sessions first), so the worker's session gets the lowest weight as well.
  [[ -n "${FID_NICE:-}" ]] && { renice -n 19 $$ >/dev/null; echo 19 >/proc/self/autogroup 2>/dev/null || true; }
  for run in ${CONFIGS//,/ }; do
    [[ -f "$ROOT/$run/finished.json" ]] || { echo "[$run] not finished, no FID"; continue; }
    [[ -d "$ROOT/$run/checkpoints" ]] || { echo "[$run] restored from its record, no FID"; continue; }
    for prior in standard learned; do
      [[ $prior == learned && ! -d "$ROOT/$run/w_prior" ]] && continue
      "$PYTHON" -m vdm_vae.evaluation.sample_fid --workdir="$ROOT/$run" --prior=$prior \
        --num_samples="$FID_SAMPLES" --steps="$FID_STEPS"
    done
  done
}

# main.py flags of each pilot: mnist_cpu_uncond with one choice changed.
pilot_args() {
  local flags="--config=configs/mnist_cpu.py:uncond${PILOT_SMOKE:+,smoke}"
  case "$1" in
    pilot_mvdm) echo "$flags --config.optimizer.learning_rate=5e-4" \
      "--config.model.sm_ch_mult=(1,) --config.model.sm_n_layer=4" \
      "--config.model.sm_n_embd=16 --config.model.sm_pdrop=0.1" \
      "--config.model.with_fourier_features=False" ;;
    pilot_lr1e-3) echo "$flags --config.optimizer.learning_rate=1e-3" ;;
    pilot_lr2e-4) echo "$flags --config.optimizer.learning_rate=2e-4" ;;
    pilot_lr2e-3) echo "$flags --config.optimizer.learning_rate=2e-3" ;;
    *) echo "unknown pilot $1: expected pilot_mvdm or pilot_lr{2e-4,1e-3,2e-3}" >&2; return 2 ;;
  esac
}

# The pilots of $PILOTS one after the other; each resumes from its checkpoint. SIGTERM stops
# the running pilot (main.py saves) and the ones after it, even if the pilot ends its last step
# first (bash skips its own SIGINT handling when the child exits normally, so not SIGINT).
pilot_worker() {
  local stopping=""
  trap 'stopping=1' TERM
  for run in ${PILOTS//,/ }; do
    [[ -z $stopping ]] || break
    echo "=== $run to step $PILOT_STEPS"
    args=$(pilot_args "$run")
    # shellcheck disable=SC2086  # the flags are words
    "$PYTHON" main.py $args --workdir="$ROOT/$run" --config.training.stop_at_step="$PILOT_STEPS" \
      --config.training.steps_per_eval=250
  done
}

case "${1:-start}" in
  start)
    if running; then echo "already running (pid $(cat "$PID")); log: $ROOT/runner.log"; exit 0; fi
    restore
    nohup setsid "$PYTHON" experiments/run_grid.py --configs="$CONFIGS" --root="$ROOT" \
      --jobs="$JOBS" --eval_args="$EVAL_ARGS" >>"$ROOT/runner.log" 2>&1 &
    echo $! >"$PID"
    echo "started (pid $!): $CONFIGS under $ROOT; log: $ROOT/runner.log" ;;
  status)
    running && echo "running (pid $(cat "$PID"))" || echo "not running"
    "$PYTHON" experiments/collect.py --root="$ROOT" --status ;;
  stop)
    if running; then
      kill -INT "$(cat "$PID")"
      echo "stop asked: each run saves a checkpoint and exits; see $ROOT/runner.log"
    else echo "not running"; fi
    if [[ -f "$ROOT/pilots.pids" ]]; then  # main.py saves a checkpoint on SIGTERM
      xargs -r kill -TERM -- <"$ROOT/pilots.pids" 2>/dev/null || true
      rm -f "$ROOT/pilots.pids"; echo "pilots stopped"
    fi
    if [[ -f "$ROOT/fid.pids" ]]; then  # FID workers: their chunks on disk are whole
      xargs -r kill -TERM -- <"$ROOT/fid.pids" 2>/dev/null || true
      rm -f "$ROOT/fid.pids"; echo "FID workers stopped"
    fi ;;
  fid)
    for core in ${FID_CORES//,/ }; do
      nohup setsid taskset -c "$core" "$SELF" fid-worker >>"$ROOT/fid_$core.log" 2>&1 &
      echo "-$!" >>"$ROOT/fid.pids"
      echo "FID worker on core $core (pid $!): $CONFIGS, $FID_SAMPLES samples at T = $FID_STEPS;" \
        "log: $ROOT/fid_$core.log"
    done ;;
  fid-worker) fid_worker ;;
  pilots)
    for run in ${PILOTS//,/ }; do pilot_args "$run" >/dev/null; done
    log="$ROOT/pilots_$PILOT_CORE.log"
    nohup setsid taskset -c "$PILOT_CORE" "$SELF" pilot-worker >>"$log" 2>&1 &
    echo "-$!" >>"$ROOT/pilots.pids"
    echo "pilots on core $PILOT_CORE (pid $!): $PILOTS, $PILOT_STEPS steps each; log: $log" ;;
  pilot-worker) pilot_worker ;;
  collect-pilots)
    "$PYTHON" experiments/collect.py --root="$ROOT" --name=mnist_cpu_pilots --curves \
      --runs="pilot_*,mnist_cpu_uncond" \
      --command="experiments/mnist_cpu.sh pilots (PILOTS=$PILOTS, PILOT_STEPS=$PILOT_STEPS)" --merge \
      ${NOTES:+--notes="$NOTES"} ;;
  collect)  # runs that neither $ROOT nor $RECORDS holds keep their rows of the last collect
    "$PYTHON" experiments/run_records.py save --root="$ROOT" --records="$RECORDS" --runs="mnist_cpu*"
    restore  # after the save, so that a restored run is not copied back onto its record
    "$PYTHON" experiments/collect.py --root="$ROOT" --name=mnist_cpu --curves --runs="mnist_cpu*" \
      --matched-probes=experiments/results/mnist_cpu_matched_probes \
      --command="experiments/mnist_cpu.sh start (CONFIGS=$CONFIGS)" --merge \
      ${NOTES:+--notes="$NOTES"} ;;
  *) echo "usage: $0 [start|status|stop|fid|collect|pilots|collect-pilots]" >&2; exit 2 ;;
esac
