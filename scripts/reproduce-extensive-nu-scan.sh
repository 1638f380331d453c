#!/usr/bin/env bash
# The ν-scan of the two-layer extensive-output law (issue: Theory IV, must-show "the ν-scan";
# paper eq. 351 and App. F.2.1): the largest eigenvalue of W(1)ᵀW(1)/N simulated at fixed
# D = 400, N = νD for ν = 2 … 64 (3 seeds), against the exact law's edge at that ν, the
# first-order edge λ₊(∞) + c₁/ν and the ν → ∞ limit, for two (χ, γ₀) at η₀ = 0.2. Writes
# OUT_DIR/<case>/ (extensive-nu-scan.csv, extensive-collapse.csv, extensive.png, summary.txt).
#   scripts/reproduce-extensive-nu-scan.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/extensive-nu-scan}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
while read -r name chi gamma0; do
    dir="$out/$name"
    args=(theory extensive --nu 2 --chi "$chi" --gamma0 "$gamma0" --eta0 0.2 --scan-simulate 400 --seeds 3
        --out "$dir" --quiet)
    mkdir -p "$dir"
    { echo "# specdyn ${args[*]}"; "$bin" "${args[@]}"; } > "$out/$name.summary.txt"
    mv "$out/$name.summary.txt" "$dir/summary.txt"
    cat "$dir/summary.txt"
done <<'CASES'
chi1-g2 1 2
chi4-g0.5 4 0.5
CASES
