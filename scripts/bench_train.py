#!/usr/bin/env python3
"""Time one training step of a μP tanh MLP in specdyn and in PyTorch, in one run.

Same model in both: D = 256 inputs, L = 3 hidden layers of width N, one output, no biases,
weights N(0, 1) with forward multipliers 1/√D, 1/√N, 1/(γ₀N) (tutorial eq. 75), MSE loss on a
fixed batch of 256, SGD at η₀γ₀²N or Adam at the μP rates (README table). Both use the same
number of CPU threads. Prints a markdown table with the ratio specdyn / PyTorch and writes
results/bench-train.csv.

    python3 scripts/bench_train.py                      # CPU, widths 1024 and 4096
    python3 scripts/bench_train.py --device cuda        # needs a CUDA build of specdyn
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def torch_step_ms(width, optimizer, threads, device, depth=3, input_dim=256, batch=256, steps=20, warmup=3):
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    dims = [input_dim] + [width] * depth + [1]
    ws = [torch.randn(dims[i + 1], dims[i], generator=g).to(dev).requires_grad_() for i in range(depth + 1)]
    mult = [1 / math.sqrt(input_dim)] + [1 / math.sqrt(width)] * (depth - 1) + [1 / width]
    x = torch.randn(batch, input_dim, generator=g).to(dev)
    y = torch.randn(batch, 1, generator=g).to(dev)
    eta0 = 1e-3
    if optimizer == "sgd":
        opt = torch.optim.SGD([{"params": [w], "lr": eta0 * width} for w in ws])
    else:
        lrs = [eta0 / math.sqrt(input_dim)] + [eta0 / math.sqrt(width)] * (depth - 1) + [eta0]
        opt = torch.optim.Adam([{"params": [w], "lr": lr} for w, lr in zip(ws, lrs)], eps=1e-8)

    def step():
        h = x
        for i, (w, m) in enumerate(zip(ws, mult)):
            h = (h @ w.T) * m
            if i < depth:
                h = torch.tanh(h)
        loss = 0.5 * ((h - y) ** 2).sum() / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # synchronizes, as specdyn's step does

    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return sum(times) / len(times), min(times)


def specdyn_step_ms(binary, width, optimizer, threads, device):
    out = subprocess.run(
        [str(binary), "bench", "train", "--width", str(width), "--optimizer", optimizer,
         "--threads", str(threads), "--device", device],
        check=True, capture_output=True, text=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["ms_per_step"], r["ms_per_step_min"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--binary", default=str(ROOT / "target/release/specdyn"))
    ap.add_argument("--out", default=str(ROOT / "results/bench-train.csv"))
    a = ap.parse_args()
    import torch

    rows = []
    print(f"torch {torch.__version__}, {a.threads} threads, device {a.device}")
    print("| width | optimizer | specdyn ms/step | PyTorch ms/step | ratio |")
    print("|---:|---|---:|---:|---:|")
    for w in a.widths:
        for o in a.optimizers:
            s_mean, s_min = specdyn_step_ms(a.binary, w, o, a.threads, a.device)
            t_mean, t_min = torch_step_ms(w, o, a.threads, "cuda" if a.device == "cuda" else "cpu")
            ratio = s_mean / t_mean
            print(f"| {w} | {o} | {s_mean:.1f} | {t_mean:.1f} | {ratio:.2f} |", flush=True)
            rows.append(dict(device=a.device, threads=a.threads, width=w, optimizer=o,
                             specdyn_ms=round(s_mean, 3), specdyn_min_ms=round(s_min, 3),
                             torch_ms=round(t_mean, 3), torch_min_ms=round(t_min, 3),
                             ratio=round(ratio, 3), torch_version=torch.__version__))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
