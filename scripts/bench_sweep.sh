#!/usr/bin/env bash
# Sweep throughput (BENCHMARKS.md, "Sweeps"): 8 cells of configs/quickstart.toml (μP, N = 256,
# P = 128, 500 steps; η₀ × seed) run as
#   jobs1   --jobs 1 (each cell gets both threads)
#   jobs2   --jobs 2 (one thread per cell)
#   bare    --jobs 1 without spectra and checkpoints (the training alone, same processes)
# then the same 8 cells as a Slurm job array: time from `sbatch` to the first running task.
# Writes results/bench-sweep.csv.
#   scripts/bench_sweep.sh [BINARY]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(realpath "${1:-target/release/specdyn}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ cat configs/quickstart.toml; printf '\n[sweep.axes]\n"optimizer.lr" = [0.25, 0.5, 1.0, 2.0]\nseed = [0, 1]\n'; } > "$tmp/grid.toml"
{ sed -e '/^\[checkpoint\]/,/^latest_every/d' configs/quickstart.toml;
  printf '\n[checkpoint]\nper_decade = 0\nlatest_every = 0\n[spectra]\nenabled = false\n[sweep.axes]\n"optimizer.lr" = [0.25, 0.5, 1.0, 2.0]\nseed = [0, 1]\n'; } > "$tmp/bare.toml"
echo "mode,cells,wall_s,cells_per_hour,sum_cell_duration_s" > "$tmp/rows.csv"
for mode in jobs1 jobs2 bare; do
    case $mode in jobs1) cfg=grid.toml; j=1 ;; jobs2) cfg=grid.toml; j=2 ;; bare) cfg=bare.toml; j=1 ;; esac
    t0=$(date +%s.%N)
    "$bin" sweep "$tmp/$cfg" --out "$tmp/$mode" --jobs $j --quiet >/dev/null
    t1=$(date +%s.%N)
    python3 - "$mode" "$t0" "$t1" "$tmp/$mode" >> "$tmp/rows.csv" <<'PY'
import glob, json, sys
mode, t0, t1, d = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cells = glob.glob(f"{d}/cells/*/summary.json")
dur = sum(json.load(open(c))["duration_s"] for c in cells)
wall = t1 - t0
print(f"{mode},{len(cells)},{wall:.2f},{len(cells) * 3600 / wall:.0f},{dur:.2f}")
PY
    tail -1 "$tmp/rows.csv"
done
if sinfo -h >/dev/null 2>&1; then
    sub=$(date +%s.%N)
    "$bin" sweep "$tmp/grid.toml" --out "$tmp/slurm" --slurm > "$tmp/slurm.out" 2>&1
    job=$(tail -1 "$tmp/slurm/slurm/jobs.txt" | grep -oE '[0-9]+' | head -1)
    first=""
    for _ in $(seq 1 600); do
        if squeue -h -j "$job" -t RUNNING -o %i 2>/dev/null | grep -q .; then first=$(date +%s.%N); break; fi
        if ! squeue -h -j "$job" -o %i 2>/dev/null | grep -q .; then first=$(date +%s.%N); break; fi
        sleep 0.1
    done
    while squeue -h -j "$job" -o %i 2>/dev/null | grep -q .; do sleep 1; done
    done_t=$(date +%s.%N)
    python3 -c "print(f'slurm,8,{$done_t - $sub:.2f},{8 * 3600 / ($done_t - $sub):.0f},submit_to_first_running_s={$first - $sub:.2f}')" >> "$tmp/rows.csv"
    tail -1 "$tmp/rows.csv"
else
    echo "note: no Slurm cluster answers (sudo scripts/slurm-one-node.sh start); the Slurm row is skipped" >&2
fi
cp "$tmp/rows.csv" results/bench-sweep.csv
echo "wrote results/bench-sweep.csv"
