"""ResNet-18 on 32x32 synthetic images, batch 512, bf16 autocast, channels_last: lrwidget's fit_one_cycle against a
hand-written loop, in images per second.

    python benchmarks/gpu.py           # on a GPU: about 1-3 minutes on an H100 (at most 5)
    python benchmarks/gpu.py --quick   # tiny sizes on the CPU in seconds (the tests run it), to check the script

Both sides: torchvision's resnet18(num_classes=10) in channels_last, AdamW (fused on CUDA; betas 0.9/0.99, eps 1e-5,
wd 0.01 on the weights, none on batch-norm and biases), one-cycle lr and momentum, bf16 autocast, data already on
the device (a list of (x, y) batches, so that loading does not count), losses read back once at the end. Warm-up
runs are not timed; each repetition times both sides back to back on fresh models (alternating which goes first)
between torch.cuda.synchronize() calls. The figure is the median of the per-repetition ratios lrwidget img/s / hand
img/s (target >= 0.97). On CUDA it also prints the device memory lr_find needs beyond a fit of the same steps
(target: none; lr_find keeps its copy on the host and restores into the optimizer's own tensors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrwidget import DataLoaders, Learner  # noqa: E402

LR_MAX = 1e-3
Batches = list[tuple[torch.Tensor, torch.Tensor]]
Work = Callable[[], int]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic(n: int, bs: int, size: int, device: torch.device, distinct: int = 8) -> Batches:
    """`n` batches of random images (channels_last) and labels on `device`, cycling over `distinct` tensors."""
    g = torch.Generator(device="cpu").manual_seed(0)
    xs = [
        torch.randn(bs, 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
        for _ in range(distinct)
    ]
    ys = [torch.randint(0, 10, (bs,), generator=g).to(device) for _ in range(distinct)]
    return [(xs[i % distinct], ys[i % distinct]) for i in range(n)]


def make_model(device: torch.device) -> nn.Module:
    """torchvision's resnet18 with 10 classes, as it is, in channels_last."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).to(device, memory_format=torch.channels_last)


def autocast_dtype(device: torch.device, want: str) -> torch.dtype | None:
    """bf16 where autocast runs it on this device (checked with a tiny conv), else None (fp32)."""
    if want != "bf16":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return None
    try:
        conv = nn.Conv2d(3, 4, 3).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            conv(torch.randn(2, 3, 8, 8, device=device)).float().sum().backward()
        return torch.bfloat16
    except (RuntimeError, TypeError):
        return None


def hand_adamw(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as lrwidget and fastai set it up: weight decay 0.01 on the weights, none on batch-norm and biases."""
    no_wd = {
        id(p)
        for m in model.modules()
        for name, p in m.named_parameters(recurse=False)
        if isinstance(m, nn.BatchNorm2d) or name == "bias"
    }
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in no_wd]},
        {"params": [p for p in model.parameters() if id(p) in no_wd], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=LR_MAX / 25,
        betas=(0.9, 0.99),
        eps=1e-5,
        weight_decay=0.01,
        **({"fused": True} if device.type == "cuda" else {}),
    )


def hand(batches: Batches, model: nn.Module, device: torch.device, amp: torch.dtype | None) -> Work:
    """The hand-written loop: fused AdamW, OneCycleLR, autocast, loss kept on the device."""
    opt = hand_adamw(model, device)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=LR_MAX,
        total_steps=len(batches),
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e5 / 25.0,
        base_momentum=0.85,
        max_momentum=0.95,
    )
    loss_fn = nn.CrossEntropyLoss()
    cast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else contextlib.nullcontext

    def work() -> int:
        model.train()
        losses = []
        for x, y in batches:
            with cast():
                loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            losses.append(loss.detach())
        torch.stack(losses).float().cpu()
        return len(losses)

    return work


def ours(batches: Batches, model: nn.Module, device: torch.device, amp: torch.dtype | None) -> Work:
    """lrwidget: Learner over the same on-device batches, default (fused) AdamW, fit_one_cycle(1)."""
    mp = {torch.bfloat16: "bf16", None: None}[amp]
    learn = Learner(DataLoaders(batches), model, device=device, mixed_precision=mp)

    def work() -> int:
        learn.fit_one_cycle(1, LR_MAX)
        _ = learn.recorder.losses  # read back, as the hand loop does
        return learn.recorder.n_batches

    return work


def timed(prep: Callable[..., Work], batches: Batches, device: torch.device, amp: torch.dtype | None) -> float:
    """Images per second of one run on a fresh model (set-up untimed)."""
    work = prep(batches, make_model(device), device, amp)
    sync(device)
    t = time.perf_counter()
    steps = work()
    sync(device)
    return steps * batches[0][0].shape[0] / (time.perf_counter() - t)


def state_bytes(learn: Learner) -> int:
    """Bytes of weights, buffers and optimizer state."""
    ts = [
        *learn.model.parameters(),
        *learn.model.buffers(),
        *(v for s in learn.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)),
    ]
    return sum(t.numel() * t.element_size() for t in ts)


def lr_find_device_memory(batches: Batches, device: torch.device, amp: torch.dtype | None) -> tuple[int, int, int]:
    """Peak device bytes above the start of a fit and of an lr_find of the same steps, and the state's bytes."""
    learn = Learner(
        DataLoaders(batches),
        make_model(device),
        device=device,
        mixed_precision={torch.bfloat16: "bf16", None: None}[amp],
    )
    learn.fit(1, 1e-4)  # the optimizer state exists, as mid-training

    def peak(run: Callable[[], object]) -> int:
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base

    fit = peak(lambda: learn.fit(1, 1e-4))
    find = peak(lambda: learn.lr_find(start_lr=1e-7, end_lr=1e-4, num_it=len(batches), stop_div=False, show_plot=False))
    return fit, find, state_bytes(learn)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bs", type=int, default=512)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--steps", type=int, default=300, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps per side first")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--device", default=None, help="default: cuda where present, else cpu (with --quick sizes)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: batch 2, 5 steps, one repetition")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and not a.quick:
        print("no GPU here: running the tiny CPU check (--quick) instead", flush=True)
        a.quick = True
    if a.quick:
        a.bs, a.steps, a.warmup, a.reps = 2, 5, 2, 1
    torch.backends.cudnn.benchmark = True
    if device.type == "cpu":
        torch.set_num_threads(1)  # the CPU check: two threads spin badly on a busy machine
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    amp = autocast_dtype(device, a.precision)
    prec = "bf16 autocast" if amp is not None else "fp32"
    if amp is None and a.precision == "bf16":
        prec += " (bf16 autocast unavailable here)"
    print(f"device: {name} ({device}); torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
    print(
        f"resnet18(num_classes=10), {a.size}x{a.size} synthetic images on the device, batch {a.bs}, channels_last, "
        f"{prec}; {a.steps} timed steps per run, {a.warmup} warm-up steps, {a.reps} repetitions",
        flush=True,
    )
    batches = synthetic(a.steps, a.bs, a.size, device)
    sides = {"lrwidget": ours, "hand": hand}
    for side in sides.values():  # warm-up: cudnn autotuning, allocator, lazy init
        timed(side, batches[: max(a.warmup, 2)], device, amp)
    ratios, ips = [], {k: [] for k in sides}
    for r in range(a.reps):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        got = {k: timed(sides[k], batches, device, amp) for k in order}
        for k, v in got.items():
            ips[k].append(v)
        ratios.append(got["lrwidget"] / got["hand"])
        print(
            f"rep {r + 1}/{a.reps}: lrwidget {got['lrwidget']:,.0f} img/s, hand {got['hand']:,.0f} img/s, "
            f"ratio {ratios[-1]:.3f}",
            flush=True,
        )
    res = {
        "device": name,
        "precision": prec,
        "lrwidget_ips": statistics.median(ips["lrwidget"]),
        "hand_ips": statistics.median(ips["hand"]),
        "ratio": statistics.median(ratios),
        "reps": a.reps,
    }
    ok = "a tiny check, no target" if a.quick else f"target >= 0.97: {'met' if res['ratio'] >= 0.97 else 'MISSED'}"
    print(
        f"lrwidget fit_one_cycle {res['lrwidget_ips']:,.0f} img/s; hand-written loop {res['hand_ips']:,.0f} img/s; "
        f"median ratio {res['ratio']:.3f} ({ok})",
        flush=True,
    )
    if a.json:  # the timings are kept even if what follows fails
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    if device.type == "cuda":
        n = min(20, len(batches))
        fit, find, state = lr_find_device_memory(batches[:n], device, amp)
        res.update(fit_peak=fit, lr_find_peak=find, state_bytes=state)
        print(
            f"lr_find({n}) device peak {find / 2**20:.1f} MiB vs fit of {n} steps {fit / 2**20:.1f} MiB above the "
            f"model and optimizer ({state / 2**20:.1f} MiB): extra {(find - fit) / 2**20:+.1f} MiB "
            f"= {(find - fit) / state:+.3f} of the state (its copy is on the host)",
            flush=True,
        )
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
