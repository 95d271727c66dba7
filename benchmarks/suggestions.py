"""How good lr_find's suggestions and lr_search are: a one-cycle fit at each rate against the best of a grid of 10.

    python benchmarks/suggestions.py            # every task of benchmarks/tasks.py x 5 seeds (about 20 min, 2 cores)
    python benchmarks/suggestions.py --quick    # 1 seed, 3 grid lrs, 1 epoch, lr_find of 40 steps (the tests')
    python benchmarks/suggestions.py --hf       # only the tiny BERT computing its own loss (transformers)
    python benchmarks/suggestions.py --tasks parity --tasks GRU   # the tasks whose name holds one of these

For each task and seed: lr_find (defaults: 1e-7..10, 100 steps) on a fresh model, run by the widget's Find LR
(`LRWidget.find`), then fit_one_cycle(epochs, lr) from the same initial weights and the same batch order at each
suggestion (lr_min, lr_steep, valley, slide), at each lr of the grid, and as the widget's Fit one cycle runs it with
the markers where Find LR put them: slice(w.lr_min, w.lr_steep), which on one parameter group trains at w.lr_steep
(the upper marker: the widget orders the markers, so this is max(lr_min, lr_steep) where both exist). Two more
columns: `repeats=3`, the widget's markers placed on the median curve of 3 range tests (learn.lr_find(repeats=3)),
and `lr_search`, the rate learn.lr_search(epochs, budget=1.5) picks from the same start using Find LR's curve; its
cost (probe steps / the fit's steps) is reported beside it. Score: validation accuracy, or R^2 clipped at 0 for
regression (higher is better). Gap: the grid's best score minus the column's (0 = as good as the best of 10 tries;
negative = better).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tasks import HF_TASKS, TASKS, Task  # noqa: E402

from lrwidget import Learner, LRWidget, accuracy  # noqa: E402

SUGGESTIONS = ("lr_min", "lr_steep", "valley", "slide")
# widget: its Fit one cycle at the markers Find LR placed; repeats=3: the same markers placed on the median curve of
# 3 range tests; lr_search: a fit at the rate lr_search picked
COLUMNS = (*SUGGESTIONS, "widget", "repeats=3", "lr_search")
GRID = tuple(np.geomspace(1e-4, 3.0, 10).tolist())
BUDGET = 1.5


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


def markers(s: dict) -> slice | None:
    """The slice the widget's markers make of suggestions (its fallbacks, ordered), or None where it has none."""
    first = lambda order: next((s[k] for k in order if s.get(k) is not None), None)  # noqa: E731
    lo, hi = first(("lr_min", "valley", "slide", "lr_steep")), first(("lr_steep", "valley", "slide", "lr_min"))
    return None if lo is None or hi is None else slice(min(lo, hi), max(lo, hi))


def run_seed(task: Task, seed: int, grid: tuple[float, ...], epochs: int, num_it: int = 100) -> dict:
    """Every column's rate for one seed, and the score of a one-cycle fit at each of them and at each grid lr."""
    init = copy.deepcopy(task.make_model(seed).state_dict())
    learn = _learner(task, seed, init)
    w = LRWidget(learn)
    if not w.find(num_it=num_it):
        raise RuntimeError("the widget did not start lr_find")
    w.wait()
    res = learn.recorder.lr_find_result
    rep = markers(learn.lr_find(num_it=num_it, repeats=3, show_plot=False).suggestions)
    search = learn.lr_search(epochs=epochs, budget=BUDGET, find=res)

    def fit(lr: float | slice) -> float:
        learn = _learner(task, seed, init)
        learn.fit_one_cycle(epochs, lr)
        return score(task, learn)

    grid_scores = [fit(lr) for lr in grid]
    lrs = {**res.suggestions, "widget": w.lr_steep, "repeats=3": rep and rep.stop, "lr_search": search.best}
    scores = {k: None if v is None else fit(v) for k, v in res.suggestions.items()}
    scores["widget"] = fit(slice(w.lr_min, w.lr_steep))
    scores["repeats=3"] = None if rep is None else fit(rep)
    scores["lr_search"] = fit(search.best)
    probes = {"lrs": search.lrs, "scores": search.scores, "plateau": search.plateau, "range": search.range}
    return {"grid": grid_scores, "lrs": lrs, "scores": scores, "cost": search.cost, "search": probes}


def summarise(task: Task, runs: list[dict], grid: tuple[float, ...]) -> list[dict]:
    """One row per column: mean and worst gap to the grid's best, mean lr, seeds with no rate, mean cost."""
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
                "cost": statistics.mean(r["cost"] for r in runs) if k == "lr_search" else None,
            }
        )
    return rows


def overall_gaps(rows: list[dict]) -> tuple[float, float]:
    """Mean of the tasks' mean gaps and the largest worst gap, over the tasks where the column gave a rate."""
    ok = [r for r in rows if math.isfinite(r["mean_gap"])]
    return (statistics.mean(r["mean_gap"] for r in ok), max(r["worst_gap"] for r in ok)) if ok else (math.nan,) * 2


def smallest(d: dict[str, float]) -> str:
    """The names of the smallest finite values."""
    low = min((v for v in d.values() if math.isfinite(v)), default=math.nan)
    return ", ".join(k for k, v in d.items() if v <= low + 1e-9)


def _cell(r: dict) -> str:
    miss = f", {r['missing']} none" if r["missing"] else ""
    cost = f", cost {r['cost']:.2f}" if r["cost"] is not None else ""
    return f"{r['mean_gap']:.3f} ({r['worst_gap']:.3f}) @ {r['mean_lr']:.2g}{miss}{cost}"


def table(rows: list[dict]) -> str:
    """Markdown: per task, grid best and each column's mean gap (worst gap) @ geometric-mean lr."""
    names = [{"widget": "widget's fit"}.get(k, k) for k in COLUMNS]
    out = ["| task | seeds | grid best (lr) | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = {r["suggestion"]: r for r in rows if r["task"] == task}
        r0 = rs[COLUMNS[0]]
        best = f"{r0['grid_best']:.3f} ({r0['grid_best_lr']:.2g})"
        out.append(f"| {task} | {r0['seeds']} | {best} | " + " | ".join(_cell(rs[k]) for k in COLUMNS) + " |")
    overall = []
    for k in COLUMNS:
        rk = [r for r in rows if r["suggestion"] == k]
        cost = f", cost {max(r['cost'] for r in rk):.2f} max" if k == "lr_search" else ""
        mean, worst = overall_gaps(rk)
        overall.append(f"{mean:.3f} ({worst:.3f}){cost}")
    out.append("| **all tasks** | | | " + " | ".join(overall) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="seeds from this one (5: seeds no choice was made on)")
    p.add_argument("--epochs", type=int, default=None, help="every task's epochs (default: the task's, mostly 5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 seed, 3 grid lrs, 1 epoch, 40 lr_find steps: that it runs")
    p.add_argument("--hf", action="store_true", help="only the transformers task (pip install transformers)")
    p.add_argument("--tasks", action="append", help="only the tasks whose name holds this (repeatable)")
    p.add_argument("--json", help="also write every seed's rates and scores to this file")
    a = p.parse_args(argv)
    grid, num_it = GRID, 100
    if a.quick:
        a.seeds, a.epochs, grid, num_it = 1, 1, (1e-3, 1e-2, 1e-1), 40
    tasks = HF_TASKS if a.hf else [t for t in TASKS if not a.tasks or any(s in t.name for s in a.tasks)]
    torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, CPU, {a.threads} thread(s); load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; {a.seeds} seed(s) from {a.first_seed}, fit_one_cycle("
        f"{a.epochs or 'the task s epochs'}) per lr; grid {', '.join(f'{g:.2g}' for g in grid)}",
        flush=True,
    )
    rows, every, t0 = [], {}, time.perf_counter()
    for task in tasks:
        runs = [
            run_seed(task, seed, grid, a.epochs or task.epochs, num_it)
            for seed in range(a.first_seed, a.first_seed + a.seeds)
        ]
        every[task.name] = runs
        task_rows = summarise(task, runs, grid)
        rows += task_rows
        gaps = ", ".join(f"{r['suggestion']} {r['mean_gap']:+.3f}" for r in task_rows)
        print(
            f"{task.name:<28} grid best {task_rows[0]['grid_best']:.3f}; mean gap {gaps} "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    print("\nmean gap to the grid's best score (worst gap) @ geometric mean of the rate\n" + table(rows))
    gaps = {k: overall_gaps([r for r in rows if r["suggestion"] == k]) for k in COLUMNS}
    by_mean, by_worst = ({k: v[i] for k, v in gaps.items()} for i in (0, 1))
    print(f"\nsmallest mean gap: {smallest(by_mean)}; smallest worst gap: {smallest(by_worst)}")
    if a.json:
        Path(a.json).write_text(json.dumps({"grid": grid, "first_seed": a.first_seed, "runs": every}, indent=1))
    return rows


if __name__ == "__main__":
    main()
