"""lrwidget's fit_one_cycle, lr_find and widget fit against a hand-written PyTorch loop doing the same work.

    python benchmarks/overhead.py               # MLP and small CNN, CPU, one thread; fastai and torch-lr-finder
                                                # side by side where installed (pip install -e '.[bench]')
    python benchmarks/overhead.py --no-others   # lrwidget only
    python benchmarks/overhead.py --quick       # a smoke run of every case (used by the tests)

Each repetition times both sides back to back on fresh, identical models (alternating which goes first); the
figure is the median of the per-repetition ratios of time per training step (the sides of an lr_find may stop
at different steps), so that drifts of a shared, noisy machine cancel; the CPU-time ratio (process CPU seconds)
is printed beside it, as it is not inflated by time slices lost to other processes. Set-up (model, optimizer,
Learner, widget) is not timed; the work is: training, validation, lr_find's save and restore of the state.
Targets: fit_one_cycle and lr_find <= 1.05x of the hand-written loop; the widget's fit <= 1.05x of the
same fit_one_cycle headless, also with PANEL_RUNS runs in its runs panel (the fit recorded, panel and map
redrawn). fastai and torch-lr-finder rows are for comparison, with no target.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrwidget import DataLoaders, Learner, accuracy  # noqa: E402

LR_MAX = 3e-3
NUM_IT = 100
Work = Callable[[], int]  # the timed work; returns the training steps it ran
Prep = Callable[[DataLoaders, nn.Module], Work]  # the untimed set-up of one side, returning its work
TARGETS = {"fit_one_cycle": 1.05, "lr_find": 1.05, "widget fit": 1.05, "widget fit, runs panel": 1.05}
PANEL_RUNS = 10  # runs already in the panel when the timed fit starts (each of 2,000 loss points)


# -- data and models ----------------------------------------------------------------------------------


def make_data(n: int, bs: int, n_valid: int, seed: int = 0, shape: tuple[int, ...] = (784,)) -> DataLoaders:
    """Random samples of `shape` (MNIST-sized by default) with 10 classes."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n + n_valid, *shape, generator=g), torch.randint(0, 10, (n + n_valid,), generator=g)
    train = DataLoader(
        TensorDataset(x[:n], y[:n]),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    valid = DataLoader(TensorDataset(x[n:], y[n:]), batch_size=bs * 2)
    return DataLoaders(train, valid)


def make_model(seed: int = 0) -> nn.Module:
    """MLP 784-64-10."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def make_cnn(seed: int = 0) -> nn.Module:
    """A small CNN for 1x28x28 images: two conv-BN-ReLU-pool blocks (8, 16 channels) and a linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    """lrwidget's (and fastai's) default optimizer, spelled out so that every side uses the same one: AdamW with
    weight decay 0.01 on the weights, none on norm layers and biases (two parameter groups, as nanoGPT splits them)."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)
    no_wd = {
        id(p)
        for m in model.modules()
        for name, p in m.named_parameters(recurse=False)
        if isinstance(m, norms) or name == "bias"
    }
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in no_wd]},
        {"params": [p for p in model.parameters() if id(p) in no_wd], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)


# -- the hand-written loops --------------------------------------------------------------------------


def hand_fit_one_cycle(dls: DataLoaders, model: nn.Module, epochs: int = 1, lr_max: float = LR_MAX) -> Work:
    """What a careful PyTorch user writes: AdamW, OneCycleLR, loss kept per batch, validation per epoch."""
    opt = adamw(model)
    steps = epochs * len(dls.train)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=lr_max,
        total_steps=steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e5 / 25.0,
        base_momentum=0.85,
        max_momentum=0.95,
    )
    loss_fn = nn.CrossEntropyLoss()

    def work() -> int:
        losses = []
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
            tot, correct, n = 0.0, 0, 0
            with torch.no_grad():
                for x, y in dls.valid:
                    out = model(x)
                    tot += loss_fn(out, y) * len(y)
                    correct += (out.argmax(1) == y).sum()
                    n += len(y)
            float(tot / n), float(correct / n), torch.stack(losses).tolist()
        return len(losses)

    return work


def hand_lr_find(
    dls: DataLoaders, model: nn.Module, num_it: int = NUM_IT, start: float = 1e-7, end: float = 10.0
) -> Work:
    """torch-lr-finder's work: exponential lr, smoothed loss read every step, stop at 4x best, state restored."""
    opt, loss_fn = adamw(model), nn.CrossEntropyLoss()

    def work() -> int:
        saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), torch.get_rng_state()
        avg, best, it, done = 0.0, math.inf, 0, False
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
                smooth = avg / (1 - 0.98**it)
                best = min(best, smooth)
                done = it >= num_it or not math.isfinite(smooth) or smooth > 4 * best
                if done:
                    break
        model.load_state_dict(saved[0])
        opt.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
        return it

    return work


# -- lrwidget ----------------------------------------------------------------------------------------


def _learner(dls: DataLoaders, model: nn.Module) -> Learner:
    return Learner(dls, model, device="cpu", metrics=[accuracy])  # its default optimizer is `adamw` above


def ours_fit_one_cycle(dls: DataLoaders, model: nn.Module, epochs: int = 1, lr_max: float | slice = LR_MAX) -> Work:
    """lrwidget's fit_one_cycle, headless."""
    learn = _learner(dls, model)
    return lambda: (learn.fit_one_cycle(epochs, lr_max), learn.recorder.n_batches)[1]


def ours_lr_find(dls: DataLoaders, model: nn.Module, num_it: int = NUM_IT) -> Work:
    """lrwidget's lr_find, no plot."""
    learn = _learner(dls, model)
    return lambda: len(learn.lr_find(num_it=num_it, show_plot=False).lrs)


def widget_fit(dls: DataLoaders, model: nn.Module, epochs: int = 1, panel_runs: int = 0) -> Work:
    """The widget's Fit one cycle (worker thread, live charts), markers at LR_MAX/10 and LR_MAX; with `panel_runs`
    runs (of 2,000 loss points each) already in its runs panel, so the fit is recorded and panel and map redrawn."""
    import numpy as np

    from lrwidget import LRWidget
    from lrwidget.widget.runs import MAX_LOSSES, Run

    learn = _learner(dls, model)
    w = LRWidget(learn, epochs=epochs)
    w.lr_min, w.lr_steep = LR_MAX / 10, LR_MAX
    if panel_runs:
        names = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
        losses = np.linspace(2.3, 0.3, MAX_LOSSES).tolist()
        w.runs = [
            Run(1e-4 * (i + 1), 1e-3 * (i + 1), epochs, "", names, [[0.5, 0.4 + i / 100, 0.9]] * epochs, losses,
                "completed", 1.0, True, list(range(MAX_LOSSES)), MAX_LOSSES // epochs, [MAX_LOSSES] * epochs)
            for i in range(panel_runs)
        ]  # fmt: skip
        w.history.show()

    def work() -> int:
        if not w.fit(epochs):
            raise RuntimeError("the widget did not start the fit")
        w.wait()
        return learn.recorder.n_batches

    return work


def headless_fit(dls: DataLoaders, model: nn.Module, epochs: int = 1) -> Work:
    """What the widget runs, called directly: fit_one_cycle(epochs, lr_max=slice(LR_MAX/10, LR_MAX))."""
    return ours_fit_one_cycle(dls, model, epochs, slice(LR_MAX / 10, LR_MAX))


# -- fastai and torch-lr-finder (optional) -------------------------------------------------------------


def others_installed() -> dict[str, bool]:
    """Which of the optional comparison libraries can be imported."""
    return {
        name: importlib.util.find_spec(mod) is not None
        for name, mod in (("fastai", "fastai"), ("torch-lr-finder", "torch_lr_finder"))
    }


_TMP: list[tempfile.TemporaryDirectory] = []


def _tmp_dir() -> str:
    """One temporary folder for fastai's lr_find file, removed at exit."""
    if not _TMP:
        _TMP.append(tempfile.TemporaryDirectory(prefix="lrw-bench-"))
    return _TMP[0].name


def _fastai_learner(dls: DataLoaders, model: nn.Module) -> Any:
    """fastai's Learner over the same loaders, model and torch AdamW (fastai's default wd 0.01, decoupled)."""
    with warnings.catch_warnings():  # fastai's import warns about torch.jit.script
        warnings.simplefilter("ignore")
        import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle and lr_find)
        from fastai.data.core import DataLoaders as FastaiDataLoaders
        from fastai.learner import Learner as FastaiLearner
        from fastai.metrics import accuracy as fastai_accuracy
        from fastai.optimizer import OptimWrapper
    opt_func = partial(OptimWrapper, opt=torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5)
    return FastaiLearner(
        FastaiDataLoaders(dls.train, dls.valid),
        model,
        loss_func=nn.CrossEntropyLoss(),
        opt_func=opt_func,
        metrics=[fastai_accuracy],
        path=_tmp_dir(),
    )


def fastai_fit_one_cycle(dls: DataLoaders, model: nn.Module, epochs: int = 1) -> Work:
    """fastai's fit_one_cycle, progress bar and logging off."""
    learn = _fastai_learner(dls, model)

    def work() -> int:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, LR_MAX)
        return len(learn.recorder.lrs)

    return work


def fastai_lr_find(dls: DataLoaders, model: nn.Module, num_it: int = NUM_IT) -> Work:
    """fastai's lr_find (it saves the state to a file and loads it back), progress bar off."""
    learn = _fastai_learner(dls, model)

    def work() -> int:
        with learn.no_bar(), learn.no_logging():
            learn.lr_find(start_lr=1e-7, end_lr=10, num_it=num_it, show_plot=False)
        return len(learn.recorder.lrs)

    return work


def tlf_lr_find(dls: DataLoaders, model: nn.Module, num_it: int = NUM_IT) -> Work:
    """torch-lr-finder's range_test and reset, with lrwidget's smoothing (0.02) and divergence test (4x)."""
    from torch_lr_finder import LRFinder

    opt = adamw(model)

    def work() -> int:
        finder = LRFinder(model, opt, nn.CrossEntropyLoss(), device="cpu")  # stores the state in memory
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder.range_test(dls.train, start_lr=1e-7, end_lr=10, num_iter=num_it, smooth_f=0.02, diverge_th=4)
        finder.reset()
        return len(finder.history["lr"])

    return work


# -- timing ------------------------------------------------------------------------------------------


def _once(prep: Prep, dls: DataLoaders, make: Callable[[], nn.Module]) -> tuple[float, float, int]:
    """Wall-clock and process CPU seconds of one run of a side on a fresh model, and its steps."""
    work = prep(dls, make())
    t, c = time.perf_counter(), time.process_time()
    steps = work()
    return time.perf_counter() - t, time.process_time() - c, steps


def compare(
    arch: str,
    work: str,
    tool: str,
    ours: Prep,
    base: Prep,
    dls: DataLoaders,
    make: Callable[[], nn.Module],
    reps: int,
    baseline: str = "hand-written loop",
) -> dict:
    """Median over repetitions of ours/base time per step, each repetition timing both on fresh, identical models.

    `ratio` is of wall-clock time; `cpu_ratio` of the process's CPU time, which time slices lost to other
    processes on a shared machine do not inflate (with one torch thread, both are the same on a quiet machine).
    """
    _once(ours, dls, make), _once(base, dls, make)  # warm-up: allocator, caches, lazy imports
    ratios, cpu_ratios, t_ours, t_base, steps = [], [], [], [], (0, 0)
    for r in range(reps):
        pair = [("ours", ours), ("base", base)]
        if r % 2:
            pair.reverse()
        t = {k: _once(p, dls, make) for k, p in pair}
        (wo, co, no), (wb, cb, nb) = t["ours"], t["base"]
        t_ours.append(wo)
        t_base.append(wb)
        steps = (no, nb)
        ratios.append((wo / no) / (wb / nb))
        cpu_ratios.append((co / no) / (cb / nb))
    target = TARGETS.get(work.split("(")[0]) if tool == "lrwidget" else None
    res = {
        "case": f"{arch} {work}" + ("" if tool == "lrwidget" else f" [{tool}]"),
        "arch": arch,
        "work": work,
        "tool": tool,
        "baseline": baseline,
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "ours_s": statistics.median(t_ours),
        "hand_s": statistics.median(t_base),
        "reps": reps,
        "steps": steps,
        "target": target,
        "min": min(ratios),
        "max": max(ratios),
    }
    verdict = "" if target is None else f"; target <= {target:.2f}x: {'met' if res['ratio'] <= target else 'MISSED'}"
    print(
        f"{res['case']:<34} {tool} {res['ours_s']:.3f}s vs {baseline} {res['hand_s']:.3f}s "
        f"({steps[0]}/{steps[1]} steps): median ratio {res['ratio']:.3f}x (min {res['min']:.3f}, "
        f"max {res['max']:.3f}; CPU time {res['cpu_ratio']:.3f}x; {reps} reps){verdict}",
        flush=True,
    )
    return res


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (for the README)."""
    out = [
        "| case | tool | baseline | tool s | baseline s | median ratio | CPU-time ratio | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tgt = "" if r["target"] is None else f"<= {r['target']:.2f}x {'met' if r['ratio'] <= r['target'] else 'MISSED'}"
        out.append(
            f"| {r['arch']} {r['work']} | {r['tool']} | {r['baseline']} | {r['ours_s']:.3f} | {r['hand_s']:.3f} "
            f"| {r['ratio']:.3f}x | {r['cpu_ratio']:.3f}x | {tgt} |"
        )
    return "\n".join(out)


def machine_line() -> str:
    """torch version, threads and how busy the machine was (load average against cores)."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread(s) of {os.cpu_count()} cores; "
        f"load average {load} (1, 5, 15 min)"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32768, help="MLP training samples")
    p.add_argument("--cnn-samples", type=int, default=4096, help="CNN training samples")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1, help="epochs of each fit (widget: at least 2)")
    p.add_argument("--num-it", type=int, default=NUM_IT, help="lr_find steps")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arch", choices=["mlp", "cnn", "both"], default="both")
    p.add_argument(
        "--others",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time fastai and torch-lr-finder where installed (default: yes)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that every case runs")
    a = p.parse_args(argv)
    if a.quick:
        a.samples, a.cnn_samples, a.num_it, a.reps = 1024, 640, 20, 1
    torch.set_num_threads(a.threads)
    have = others_installed() if a.others else {}
    print(machine_line(), flush=True)
    print(
        "optional: "
        + (
            ", ".join(f"{k} {'installed' if v else 'not installed'}" for k, v in have.items())
            or "fastai and torch-lr-finder not timed (--no-others)"
        ),
        flush=True,
    )
    rows = []
    for arch in ["mlp", "cnn"] if a.arch == "both" else [a.arch]:
        if arch == "mlp":
            dls, make = make_data(a.samples, a.bs, n_valid=a.samples // 8), make_model
            what = "MLP 784-64-10"
        else:
            dls, make = make_data(a.cnn_samples, a.bs, n_valid=a.cnn_samples // 8, shape=(1, 28, 28)), make_cnn
            what = "CNN conv8-conv16 (BN) on 1x28x28"
        print(f"-- {arch}: {what}, batch {a.bs}, {len(dls.train)} batches/epoch, {a.epochs} epoch(s)", flush=True)
        fit, wfit = partial(ours_fit_one_cycle, epochs=a.epochs), max(a.epochs, 2)
        rows.append(
            compare(
                arch, "fit_one_cycle", "lrwidget", fit, partial(hand_fit_one_cycle, epochs=a.epochs), dls, make, a.reps
            )
        )
        find, lr_find = f"lr_find({a.num_it})", partial(ours_lr_find, num_it=a.num_it)
        hand_find = partial(hand_lr_find, num_it=a.num_it)
        rows.append(compare(arch, find, "lrwidget", lr_find, hand_find, dls, make, a.reps))
        for work, runs in (("widget fit", 0), ("widget fit, runs panel", PANEL_RUNS)):
            widget = partial(widget_fit, epochs=wfit, panel_runs=runs)
            headless = partial(headless_fit, epochs=wfit)
            rows.append(compare(arch, work, "lrwidget", widget, headless, dls, make, a.reps, "headless fit_one_cycle"))
        if have.get("fastai"):
            rows.append(
                compare(
                    arch,
                    "fit_one_cycle",
                    "fastai",
                    partial(fastai_fit_one_cycle, epochs=a.epochs),
                    partial(hand_fit_one_cycle, epochs=a.epochs),
                    dls,
                    make,
                    a.reps,
                )
            )
            rows.append(
                compare(arch, find, "fastai", partial(fastai_lr_find, num_it=a.num_it), hand_find, dls, make, a.reps)
            )
        if have.get("torch-lr-finder"):
            rows.append(
                compare(
                    arch, find, "torch-lr-finder", partial(tlf_lr_find, num_it=a.num_it), hand_find, dls, make, a.reps
                )
            )
    print("\n" + table(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
