"""What the status says when a run ends: lr_find, a fit, a sweep."""

from __future__ import annotations

from typing import Any

from ..core.find_result import LRFindResult
from ..core.interface import Driven
from .formats import fmt_time

EARLY_ENDS = ("stopped", "interrupted")


def unit(accum_steps: int, plural: bool = False) -> str:
    """What the progress counts: batches, or optimizer steps when a step sums several batches' gradients."""
    if accum_steps > 1:
        return "steps" if plural else "step"
    return "batches" if plural else "batch"


def find_ended(res: LRFindResult, learn: Driven, markers_said: str) -> str:
    """lr_find's end: its steps, how it ended, what became of the markers (`markers_said`) and of the state."""
    note = f"; {learn.note}" if learn.note else ""  # what a fastai Learner cannot tell
    run = learn.run
    if run is not None and run.kind == "lr_find" and run.copy_on_disk:
        note += f"; its copy of the state was {run.copy_on_disk} (deleted)"
    steps = len(res.lrs)
    if res.end_reason in EARLY_ENDS:
        return f"lr_find {res.end_reason} after {steps} steps; {learn.lr_find_restores}; markers not moved{note}"
    return f"lr_find done ({steps} steps, {res.end_reason}): {markers_said}{note}"


def fit_ended(learn: Driven, from_start: bool, start_said: str) -> str:
    """A fit's end: stopped (where, and what the weights keep) or done (epochs, time, the last epoch's figures)."""
    run, rec = learn.run, learn.recorder
    if run.end_reason in EARLY_ENDS:
        units = unit(learn.accum_steps, plural=True)
        where = (
            f"in the last validation, after all {run.total} {units} trained (that epoch has no validation row)"
            if rec.n_batches >= run.total
            else f"after {rec.n_batches}/{run.total} {units}"
        )
        done = len(rec.values)
        return f"fit {run.end_reason} {where}; {done} full epoch{'s' * (done != 1)}; the weights keep the training done"
    last = ""
    if rec.values:
        last = " · " + ", ".join(f"{n} {v:.4f}" for n, v in zip(rec.metric_names[1:-1], rec.values[-1]))
    began = " from the start" if from_start else ""
    return f"fit done{began}: {len(rec.values)} epochs in {fmt_time(run.elapsed)}{last}{start_said}"


def sweep_ended(done: int, total: int, last: Any, best_said: str, start_said: str) -> str:
    """A sweep's end: how many rates ran, which did best, and that the weights are back at the start."""
    if last is not None and last.end_reason in EARLY_ENDS:
        head = f"sweep {last.end_reason} at rate {done} of {total}; the {_n(done, 'run')} made are kept"
    else:
        head = f"sweep done: {_n(done, 'rate')} from the same start"
    click = ": click its row to put the markers there" if "run #" in best_said else ""
    return f"{head}; {best_said}{click}; the weights are back at the start{start_said}"


def _n(k: int, noun: str) -> str:
    """'1 rate', '3 rates'."""
    return f"{k} {noun}{'s' * (k != 1)}"
