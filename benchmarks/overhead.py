"""lrwidget's fit_one_cycle and lr_find against a hand-written PyTorch loop doing the same work, in one process.

    python benchmarks/overhead.py            # MLP 784-64-10, batch 64, 32768 samples, CPU, one thread
    python benchmarks/overhead.py --quick    # a smoke run of every case (used by the tests)

Each repetition times both sides back to back (alternating which goes first); the figure is the median
of the per-repetition ratios, so that drifts of a shared, noisy machine cancel.
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrwidget import DataLoaders, Learner, accuracy  # noqa: E402

LR_MAX = 3e-3


def make_data(n: int, bs: int, n_valid: int, seed: int = 0) -> DataLoaders:
    """Random MNIST-sized samples: 784 features, 10 classes."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n + n_valid, 784, generator=g), torch.randint(0, 10, (n + n_valid,), generator=g)
    train = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=bs, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(seed))
    valid = DataLoader(TensorDataset(x[n:], y[n:]), batch_size=bs * 2)
    return DataLoaders(train, valid)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)


def hand_fit_one_cycle(dls: DataLoaders, model: nn.Module, epochs: int = 1) -> float:
    """What a careful PyTorch user writes: AdamW, OneCycleLR, loss kept per batch, validation per epoch."""
    opt = adamw(model.parameters())
    steps = epochs * len(dls.train)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR_MAX, total_steps=steps, pct_start=0.25,
                                                div_factor=25., final_div_factor=1e5 / 25., base_momentum=0.85,
                                                max_momentum=0.95)
    loss_fn, losses = nn.CrossEntropyLoss(), []
    for _ in range(epochs):
        model.train()
        for x, y in dls.train:
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            losses.append(loss.detach())
        model.eval()
        tot, correct, n = 0., 0, 0
        with torch.no_grad():
            for x, y in dls.valid:
                out = model(x)
                tot += loss_fn(out, y) * len(y)
                correct += (out.argmax(1) == y).sum()
                n += len(y)
        float(tot / n), float(correct / n), torch.stack(losses).tolist()
    return float(losses[-1])


def hand_lr_find(dls: DataLoaders, model: nn.Module, num_it: int = 100, start: float = 1e-7, end: float = 10.) -> int:
    """torch-lr-finder's work: exponential lr, smoothed loss read every step, stop at 4x best, state restored."""
    opt = adamw(model.parameters())
    saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), torch.get_rng_state()
    loss_fn, avg, best, it, done = nn.CrossEntropyLoss(), 0., math.inf, 0, False
    model.train()
    while not done:
        for x, y in dls.train:
            for g in opt.param_groups:
                g["lr"] = start * (end / start) ** (it / num_it)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            avg = 0.98 * avg + 0.02 * loss.item()
            it += 1
            smooth = avg / (1 - 0.98 ** it)
            best = min(best, smooth)
            done = it >= num_it or not math.isfinite(smooth) or smooth > 4 * best
            if done:
                break
    model.load_state_dict(saved[0]); opt.load_state_dict(saved[1]); torch.set_rng_state(saved[2])
    return it


def ours_fit_one_cycle(dls: DataLoaders, model: nn.Module, epochs: int = 1) -> float:
    learn = Learner(dls, model, opt_func=adamw, device="cpu", metrics=[accuracy])
    learn.fit_one_cycle(epochs, LR_MAX)
    return learn.recorder.values[-1][0]


def ours_lr_find(dls: DataLoaders, model: nn.Module, num_it: int = 100) -> int:
    learn = Learner(dls, model, opt_func=adamw, device="cpu")
    return len(learn.lr_find(num_it=num_it, show_plot=False).lrs)


def timed(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def compare(name: str, ours: Callable, hand: Callable, dls: DataLoaders, reps: int) -> dict:
    """Median over repetitions of ours/hand, each repetition timing both on fresh, identical models."""
    ratios, t_ours, t_hand = [], [], []
    ours(dls, make_model()), hand(dls, make_model())        # warm-up: allocator, caches, lazy imports
    for r in range(reps):
        pair = [("ours", ours), ("hand", hand)]
        if r % 2:
            pair.reverse()
        t = {k: timed(lambda f=f: f(dls, make_model())) for k, f in pair}
        t_ours.append(t["ours"]); t_hand.append(t["hand"])
        ratios.append(t["ours"] / t["hand"])
    res = {"case": name, "ratio": statistics.median(ratios), "ours_s": statistics.median(t_ours),
           "hand_s": statistics.median(t_hand), "reps": reps}
    print(f"{name:<16} ours {res['ours_s']:.3f}s  hand {res['hand_s']:.3f}s  median ratio {res['ratio']:.3f}x "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {reps} reps)", flush=True)
    return res


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32768)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that every case runs")
    a = p.parse_args(argv)
    if a.quick:
        a.samples, a.reps = 1024, 1
    torch.set_num_threads(a.threads)
    dls = make_data(a.samples, a.bs, n_valid=a.samples // 8)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread(s); MLP 784-64-10, batch {a.bs}, "
          f"{a.samples} samples ({len(dls.train)} batches/epoch)", flush=True)
    return [compare("fit_one_cycle", ours_fit_one_cycle, hand_fit_one_cycle, dls, a.reps),
            compare("lr_find(100)", ours_lr_find, hand_lr_find, dls, a.reps)]


if __name__ == "__main__":
    main()
