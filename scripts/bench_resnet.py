#!/usr/bin/env python3
"""Images per second of one SGD step of the μP residual CNN, specdyn vs PyTorch, in one run.

Same model in both (configs/cifar-resnet.toml's): a 3×3 stem convolution (3 → N channels), two
residual blocks h ← h + β·m·conv(relu(m·conv(relu(h), W¹)), W²) with β = 1/√2, global average
pooling and a linear readout to 10 classes; no biases, no normalization; weights N(0, 1) with
forward multipliers 1/√(3·9), 1/√(9N) and 1/(γ₀N); MSE to one-hot targets on a fixed batch of
Gaussian 32×32×3 images; SGD at η₀γ₀²N. Same number of CPU threads on both sides. Prints a
markdown table with the ratio specdyn / PyTorch and writes results/bench-resnet.csv.

    python3 scripts/bench_resnet.py                  # CPU, N = 32, 64, 128
    python3 scripts/bench_resnet.py --device cuda    # needs a CUDA build of specdyn
"""
import argparse
import csv
import json
import math
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def torch_step_ms(width, threads, device, blocks=2, batch=128, steps=5, warmup=1):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    stem = torch.randn(width, 3, 3, 3, generator=g).to(dev).requires_grad_()
    convs = [torch.randn(width, width, 3, 3, generator=g).to(dev).requires_grad_() for _ in range(2 * blocks)]
    readout = torch.randn(10, width, generator=g).to(dev).requires_grad_()
    m_in, m_hid, m_out, beta = 1 / math.sqrt(27), 1 / math.sqrt(9 * width), 1 / width, 1 / math.sqrt(blocks)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(dev)
    y = F.one_hot(torch.arange(batch) % 10, 10).float().to(dev)
    params = [stem, *convs, readout]
    opt = torch.optim.SGD(params, lr=1e-3 * width)

    def step():
        h = m_in * F.conv2d(x, stem, padding=1)
        for b in range(blocks):
            z = m_hid * F.conv2d(F.relu(h), convs[2 * b], padding=1)
            h = h + beta * m_hid * F.conv2d(F.relu(z), convs[2 * b + 1], padding=1)
        f = m_out * F.relu(h).mean(dim=(2, 3)) @ readout.T
        loss = 0.5 * ((f - y) ** 2).sum() / batch
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
    return sum(times) / len(times)


def specdyn_step_ms(binary, width, threads, device, blocks=2, batch=128, steps=5, warmup=1):
    exe = Path(binary)
    cmd = [str(exe), "bench", "resnet", "--width", str(width), "--blocks", str(blocks), "--batch", str(batch),
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads), "--device", device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ms_per_step"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench-resnet.csv"))
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "specdyn"))
    a = ap.parse_args()
    import torch

    rows = []
    print(f"PyTorch {torch.__version__}, {a.threads} threads, batch {a.batch}, device {a.device}")
    print("| width N | specdyn ms/step | PyTorch ms/step | specdyn images/s | PyTorch images/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for w in [int(v) for v in a.widths.split(",")]:
        tdev = "cuda" if a.device == "cuda" else "cpu"
        s = specdyn_step_ms(a.binary, w, a.threads, a.device, batch=a.batch)
        t = torch_step_ms(w, a.threads, tdev, batch=a.batch)
        rows.append({"width": w, "batch": a.batch, "threads": a.threads, "device": a.device,
                     "specdyn_ms": round(s, 2), "pytorch_ms": round(t, 2), "ratio": round(s / t, 3)})
        print(f"| {w} | {s:.1f} | {t:.1f} | {a.batch / s * 1e3:.0f} | {a.batch / t * 1e3:.0f} | {s / t:.2f} |", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
