#!/usr/bin/env bash
# The GPU check: one call on a GPU machine with a binary built beforehand
# (`cargo build --release --features cuda,wgpu`; the machine needs no Rust or cargo registry).
#   1. correctness: an MLP (tanh, Adam, minibatches) and a residual CNN (ReLU, cross-entropy,
#      augmented minibatches of random images in CIFAR-10's binary format) train 20 steps on
#      every device from the same seed (batches gathered on the device);
#      every logged loss must match the CPU's within 1e-3 relative (f32, different reduction
#      orders); `correctness.csv`.
#   2. speed: MLP training step (D = 256, L = 3, batch 256, N = 4096, 8192, SGD and Adam) and
#      ResNet images/s (N = 128, 256, 512) against PyTorch on the same device, in one run
#      (scripts/bench_train.py, scripts/bench_resnet.py; needs python3 with torch);
#      every singular value of a 4096² and an 8192² matrix on the CPU threads.
# Everything goes under OUT (default gpu-check/); the summary is OUT/report.md.
#   scripts/gpu-check.sh [OUT] [DEVICES]       DEVICES default "cuda wgpu"; "wgpu" on lavapipe
# SPECDYN_BIN overrides the binary; GPU_CHECK_QUICK=1 shrinks everything (for lavapipe, where
# burn's conv autotuning alone takes minutes at N = 32).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${SPECDYN_BIN:-target/release/specdyn}
out=${1:-gpu-check}
devices=${2:-cuda wgpu}
quick=${GPU_CHECK_QUICK:-0}
[ -x "$bin" ] || { echo "error: $bin is not an executable. Fix: cargo build --release --features cuda,wgpu (or set SPECDYN_BIN)" >&2; exit 2; }
if [ "$quick" = 1 ]; then steps=5; mlp_width=128; rn_width=8; rn_batch=8; else steps=20; mlp_width=512; rn_width=32; rn_batch=64; fi
mkdir -p "$out"
report="$out/report.md"
: > "$report"
log() { echo "$@" | tee -a "$report"; }
log "# specdyn GPU check ($(date -u +%FT%TZ))"
log ""
log "binary: $bin ($("$bin" --version 2>/dev/null))"
command -v nvidia-smi >/dev/null && log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
log ""

# Random images in CIFAR-10's binary format (the check must not depend on a download).
python3 - "$out/images" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rng = random.Random(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(64):
            f.write(bytes([rng.randrange(10)]) + bytes(rng.randrange(256) for _ in range(3072)))
PY

# Both check runs: no checkpoints and no spectra (only the losses are compared).
no_files=$'[checkpoint]\nper_decade = 0\nlatest_every = 0\n[spectra]\nenabled = false'
cat > "$out/mlp.toml" <<TOML
[model]
depth = 3
width = $mlp_width
activation = "tanh"
[data]
input_dim = 64
train_size = 256
test_size = 0
[optimizer]
kind = "adam"
lr = 0.01
[train]
steps = $steps
batch_size = 64
log_every = 1
$no_files
TOML
cat > "$out/resnet.toml" <<TOML
[model]
kind = "resnet"
depth = 2
width = $rn_width
activation = "relu"
downsample_every = 1
[data]
kind = "cifar10"
dir = "$out/images"
train_size = 256
test_size = 0
augment = true
[optimizer]
lr = 0.5
[train]
steps = $steps
batch_size = $rn_batch
loss = "cross-entropy"
log_every = 1
$no_files
TOML

log "## 1. Correctness against the CPU ($steps steps, every loss within 1e-3 relative)"
log ""
echo "model,device,status,seconds,max_rel_loss_diff" > "$out/correctness.csv"
fail=0
for model in mlp resnet; do
    for dev in cpu $devices; do
        start=$(date +%s.%N)
        if "$bin" train "$out/$model.toml" --out "$out/runs/$model-$dev" --overwrite --quiet --device "$dev" > "$out/runs-$model-$dev.log" 2>&1; then
            status=ok
        else
            status="failed (exit $?; see runs-$model-$dev.log)"
        fi
        secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
        diff=$(python3 - "$out/runs/$model-cpu/metrics.csv" "$out/runs/$model-$dev/metrics.csv" <<'PY'
import csv, sys
try:
    a = [float(r["train_loss"]) for r in csv.DictReader(open(sys.argv[1]))]
    b = [float(r["train_loss"]) for r in csv.DictReader(open(sys.argv[2]))]
    print(f"{max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)):.2e}" if len(a) == len(b) and a else "n/a")
except Exception:
    print("n/a")
PY
)
        if [ "$status" = ok ] && [ "$dev" != cpu ]; then
            python3 -c "import sys; sys.exit(0 if '$diff' != 'n/a' and float('$diff') <= 1e-3 else 1)" || { status="MISMATCH"; fail=1; }
        fi
        [ "$status" = ok ] || [ "$dev" = cpu ] || fail=1
        echo "$model,$dev,$status,$secs,$diff" >> "$out/correctness.csv"
        log "- $model on $dev: $status, ${secs} s, max relative loss difference vs cpu $diff"
    done
done
log ""

log "## 2. Speed against PyTorch on the same device"
log ""
if [ "$quick" = 1 ]; then mlp_widths="256 512"; rn_widths="16"; svd_sizes="512x512"; else mlp_widths="4096 8192"; rn_widths="128,256,512"; svd_sizes="4096x4096 8192x8192"; fi
case " $devices " in *" cuda "*) ;; *) log "(no cuda in DEVICES: the PyTorch comparison is skipped)" ;; esac
for dev in $devices; do
    [ "$dev" = cuda ] || continue
    python3 scripts/bench_train.py --device cuda --widths $mlp_widths --binary "$bin" --out "$out/bench-train-cuda.csv" 2>&1 | tee -a "$report"
    python3 scripts/bench_resnet.py --device cuda --widths "$rn_widths" --binary "$bin" --out "$out/bench-resnet-cuda.csv" 2>&1 | tee -a "$report"
done
log ""
log "## 3. Every singular value on the CPU threads"
log ""
"$bin" bench svd --shapes $svd_sizes 2>&1 | tee -a "$report" || true
log ""
[ "$fail" = 0 ] && log "RESULT: every device matched the CPU" || log "RESULT: a device failed or did not match (see above)"
exit $fail
