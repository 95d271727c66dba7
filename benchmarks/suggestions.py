"""How good lr_find's suggestions are: a short one-cycle fit at each suggestion against the best of a grid of 10 lrs.

    python benchmarks/suggestions.py           # 4 offline tasks x 5 seeds, 5-epoch fits (a few minutes on 2 cores)
    python benchmarks/suggestions.py --quick   # 1 seed, 3 grid lrs, 1 epoch (used by the tests)
    python benchmarks/suggestions.py --hf      # a tiny BERT computing its own loss (transformers), 5 seeds

For each task and seed: lr_find (defaults: 1e-7..10, 100 steps) on a fresh model, run by the widget's Find LR
(`LRWidget.find`), then fit_one_cycle(epochs, lr) from the same initial weights and the same batch order at each
suggestion (lr_min, lr_steep, valley, slide), at each lr of the grid, and as the widget's Fit one cycle runs it with
the markers where Find LR put them: slice(w.lr_min, w.lr_steep), which on one parameter group trains at w.lr_steep
(the upper marker: the widget orders the markers, so this is max(lr_min, lr_steep) where both exist). Score:
validation accuracy, or R^2 clipped at 0 for regression (higher is better). Gap: the grid's best score minus the
suggestion's (0 = as good as the best of 10 tries; negative = better).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrwidget import DataLoaders, Learner, LRWidget, accuracy  # noqa: E402
from lrwidget.data import digits  # noqa: E402

SUGGESTIONS = ("lr_min", "lr_steep", "valley", "slide")
COLUMNS = (*SUGGESTIONS, "widget")  # widget: its Fit one cycle at the markers Find LR placed
GRID = tuple(np.geomspace(1e-4, 3.0, 10).tolist())


@dataclass
class Task:
    """A small offline problem: fresh loaders and models for a seed, the optimizer, and how to score a fit."""

    name: str
    make_dls: Callable[[int], DataLoaders]
    make_model: Callable[[int], nn.Module]
    regression: bool = False
    opt_func: Callable | None = None


def mlp(seed: int) -> nn.Module:
    """MLP 64-128-10 for the flat digits."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn(seed: int) -> nn.Module:
    """Two conv-BN-ReLU-pool blocks and a linear head for 1x16x16 digits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def regression_data(seed: int, n: int = 2000, n_valid: int = 500, bs: int = 64) -> DataLoaders:
    """y = sin(2 x0) + x1 x2 + x3^2 / 2 - x4 + noise over 8 Gaussian features, standardised."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n + n_valid, 8, generator=g)
    noise = 0.1 * torch.randn(n + n_valid, generator=g)
    y = torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + x[:, 3] ** 2 / 2 - x[:, 4] + noise
    y = ((y - y[:n].mean()) / y[:n].std())[:, None]
    train = DataLoader(
        TensorDataset(x[:n], y[:n]),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoaders(train, DataLoader(TensorDataset(x[n:], y[n:]), batch_size=bs * 2))


def regression_mlp(seed: int) -> nn.Module:
    """MLP 8-64-64-1."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


TASKS = [
    Task("digits MLP, AdamW", lambda s: digits(bs=64, seed=s), mlp),
    Task("digits CNN, AdamW", lambda s: digits(bs=64, images=True, size=16, seed=s), cnn),
    Task("regression MLP, AdamW", regression_data, regression_mlp, regression=True),
    Task(
        "digits MLP, SGD+momentum",
        lambda s: digits(bs=64, seed=s),
        mlp,
        opt_func=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.0),
    ),
]


def bert_data(seed: int, n: int = 2000, n_valid: int = 500, bs: int = 32) -> DataLoaders:
    """16 tokens of 5..63 after a [CLS]; label: more than 7 of the 15 below 34. Dict batches with labels."""
    from torch.utils.data import Dataset

    class Count(Dataset):
        def __init__(self, n: int, seed: int):
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(5, 64, (n, 16), generator=g)
            self.ids[:, 0] = 1
            self.labels = ((self.ids[:, 1:] < 34).sum(1) > 7).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    g = torch.Generator().manual_seed(seed)
    train = DataLoader(Count(n, 2000 + seed), batch_size=bs, shuffle=True, generator=g)
    return DataLoaders(train, DataLoader(Count(n_valid, 9999), batch_size=128))


def bert(seed: int) -> nn.Module:
    """A 2-layer BERT of width 32 from a config (transformers, no download): it computes its own loss."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(cfg)


HF_TASKS = [Task("tiny BERT (own loss), AdamW", bert_data, bert)]


def _learner(task: Task, seed: int, init: dict) -> Learner:
    model = task.make_model(seed)
    model.load_state_dict(init)
    return Learner(
        task.make_dls(seed),
        model,
        opt_func=task.opt_func,
        device="cpu",
        metrics=None if task.regression else [accuracy],
    )


def score(task: Task, learn: Learner) -> float:
    """Validation accuracy, or R^2 (clipped at 0, which a constant prediction scores) for regression."""
    row = learn.recorder.values[-1]
    if not task.regression:
        s = row[2]
    else:
        y = torch.cat([yb for _, yb in learn.dls.valid])
        s = max(0.0, 1 - row[1] / float(y.var(unbiased=False)))
    return s if math.isfinite(s) else 0.0


def run_seed(task: Task, seed: int, grid: tuple[float, ...], epochs: int) -> dict:
    """lr_find's suggestions for one seed, and the score of a one-cycle fit at each suggestion and grid lr."""
    init = copy.deepcopy(task.make_model(seed).state_dict())
    learn = _learner(task, seed, init)
    w = LRWidget(learn)
    if not w.find():
        raise RuntimeError("the widget did not start lr_find")
    w.wait()
    res = learn.recorder.lr_find_result

    def fit(lr: float | slice) -> float:
        learn = _learner(task, seed, init)
        learn.fit_one_cycle(epochs, lr)
        return score(task, learn)

    grid_scores = [fit(lr) for lr in grid]
    lrs = {**res.suggestions, "widget": w.lr_steep}
    scores = {k: None if v is None else fit(v) for k, v in res.suggestions.items()}
    scores["widget"] = fit(slice(w.lr_min, w.lr_steep))
    return {"grid": grid_scores, "lrs": lrs, "scores": scores}


def summarise(task: Task, runs: list[dict], grid: tuple[float, ...]) -> list[dict]:
    """One row per suggestion: mean and worst gap to the grid's best, mean lr, seeds with no suggestion."""
    best = [max(r["grid"]) for r in runs]
    best_lr = statistics.median(grid[int(np.argmax(r["grid"]))] for r in runs)
    rows = []
    for k in COLUMNS:
        gaps = [b - r["scores"][k] for b, r in zip(best, runs) if r["scores"][k] is not None]
        lrs = [r["lrs"][k] for r in runs if r["lrs"][k] is not None]
        rows.append(
            {
                "task": task.name,
                "seeds": len(runs),
                "grid_best": statistics.mean(best),
                "grid_best_lr": best_lr,
                "suggestion": k,
                "mean_gap": statistics.mean(gaps) if gaps else math.nan,
                "worst_gap": max(gaps) if gaps else math.nan,
                "mean_lr": float(np.exp(np.mean(np.log(lrs)))) if lrs else math.nan,
                "missing": len(runs) - len(gaps),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per task, grid best and each suggestion's mean gap (worst gap) @ geometric-mean lr."""
    head = "| task | seeds | grid best (lr) | " + " | ".join(COLUMNS[:-1]) + " | widget's fit |"
    out = [head, "|---|---|---|" + "---|" * len(COLUMNS)]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = {r["suggestion"]: r for r in rows if r["task"] == task}
        r0 = rs[COLUMNS[0]]
        cells = []
        for k in COLUMNS:
            r = rs[k]
            miss = f", {r['missing']} none" if r["missing"] else ""
            cells.append(f"{r['mean_gap']:.3f} ({r['worst_gap']:.3f}) @ {r['mean_lr']:.2g}{miss}")
        best = f"{r0['grid_best']:.3f} ({r0['grid_best_lr']:.2g})"
        out.append(f"| {task} | {r0['seeds']} | {best} | " + " | ".join(cells) + " |")
    overall = []
    for k in COLUMNS:
        rk = [r for r in rows if r["suggestion"] == k]
        overall.append(f"{statistics.mean(r['mean_gap'] for r in rk):.3f} ({max(r['worst_gap'] for r in rk):.3f})")
    out.append("| **all tasks** | | | " + " | ".join(overall) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 seed, 3 grid lrs, 1 epoch: check that it runs")
    p.add_argument("--hf", action="store_true", help="the transformers task instead (pip install transformers)")
    a = p.parse_args(argv)
    grid = GRID
    if a.quick:
        a.seeds, a.epochs, grid = 1, 1, (1e-3, 1e-2, 1e-1)
    torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, CPU, {a.threads} thread(s); load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; {a.seeds} seed(s), fit_one_cycle({a.epochs}) "
        f"per lr; grid {', '.join(f'{g:.2g}' for g in grid)}",
        flush=True,
    )
    rows, t0 = [], time.perf_counter()
    for task in HF_TASKS if a.hf else TASKS:
        runs = [run_seed(task, seed, grid, a.epochs) for seed in range(a.seeds)]
        task_rows = summarise(task, runs, grid)
        rows += task_rows
        gaps = ", ".join(f"{r['suggestion']} {r['mean_gap']:+.3f}" for r in task_rows)
        print(
            f"{task.name:<26} grid best {task_rows[0]['grid_best']:.3f}; mean gap {gaps} "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    print("\nmean gap to the grid's best score (worst gap) @ geometric mean of the suggested lr\n" + table(rows))
    by_mean = {k: statistics.mean(r["mean_gap"] for r in rows if r["suggestion"] == k) for k in COLUMNS}
    by_worst = {k: max(r["worst_gap"] for r in rows if r["suggestion"] == k) for k in COLUMNS}
    best = lambda d: ", ".join(k for k, v in d.items() if v <= min(d.values()) + 1e-9)  # noqa: E731
    print(f"\nsmallest mean gap: {best(by_mean)}; smallest worst gap: {best(by_worst)}")
    return rows


if __name__ == "__main__":
    main()
