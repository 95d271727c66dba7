"""Run records (one per Fit of a widget), the rates a sweep tries, which run did best, and the history file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import is_real
from ..core.find_result import LRFindResult, json_float, read_float

__all__ = [
    "Run",
    "thin",
    "sweep_rates",
    "best_index",
    "outcome",
    "ranked",
    "groups",
    "best_of",
    "called",
    "save_history",
    "load_history",
    "MAX_LOSSES",
]

MAX_LOSSES = 2000  # training-loss points kept per run: the panel draws a few hundred pixels
HISTORY_FORMAT = "lrwidget.history"
HISTORY_VERSION = 1  # runs gained `start`, then `steps`, `search` and `probe` (a file without them reads as
# before; older lrwidgets ignore them)
DIVERGED_ENDS = ("diverged", "non-finite loss", "non-finite gradients")


@dataclass
class Run:
    """One Fit: the slice it trained at, what it recorded and how it ended."""

    lr_min: float
    lr_steep: float
    epochs: int
    code: str  # the call, as `w.code` showed it
    metric_names: list[str]  # as recorder.metric_names: epoch, train_loss, valid_loss, metrics..., time
    values: list[list[float]]  # per epoch: train_loss, valid_loss, metrics (recorder.values)
    losses: list[float]  # smoothed training loss per batch, at most MAX_LOSSES of them, evenly spaced
    end_reason: str  # 'completed', 'stopped', 'interrupted', 'diverged', 'non-finite loss' or 'error'
    seconds: float
    from_start: bool  # it began from the widget's start (the same weights, optimizer and random state)
    batches: list[int] = field(default_factory=list)  # the batch number of each point of `losses`
    n_iter: int = 0  # training batches per epoch, so batches read as epochs
    iters: list[int] = field(default_factory=list)  # batches done at each epoch end (recorder.iters)
    loaded: bool = False  # read from a history file, not run in this kernel
    sweep: bool = False  # one of a sweep's fits
    start: str = ""  # the start it began at ('start 1'; a loaded run's names its file); '' if it went on
    search: int = 0  # the widget's search it was a probe of (1, 2, ...), 0 for a plain run
    probe: str = ""  # its place in that search: '3 of 10 (sweep)'
    steps: int = 0  # optimizer steps planned (a probe's may end inside an epoch); 0 in older files: epochs x n_iter

    @property
    def valid_loss(self) -> float:
        """The last epoch's validation loss (nan when there is none)."""
        return _column(self, "valid_loss")

    @property
    def train_loss(self) -> float:
        """The last epoch's training loss (nan when there is none)."""
        return _column(self, "train_loss")

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's metrics by name."""
        names = self.metric_names[3:-1]
        last = self.values[-1] if self.values else []
        return {n: float(last[i + 2]) if len(last) > i + 2 else math.nan for i, n in enumerate(names)}

    @property
    def diverged(self) -> bool:
        """It ended worse than it began (its outcome above its first training loss), or at a non-finite loss."""
        if self.end_reason in DIVERGED_ENDS:
            return True
        out = outcome(self)
        if self.values and not math.isfinite(out):
            return True
        first = next((v for v in self.losses if math.isfinite(v)), math.nan)
        return math.isfinite(first) and math.isfinite(out) and out > first

    @property
    def planned(self) -> int:
        """Optimizer steps planned: `steps`, or epochs x steps per epoch for a run of an older file."""
        return self.steps or self.epochs * self.n_iter

    @property
    def group(self) -> tuple[int, str] | None:
        """What makes runs comparable: the same length (optimizer steps planned, over the same data) from the same start
        (None for a run that went on). A search's probes are a group of their own length: a 1-epoch fit of as many
        steps is their rival, a full fit is not."""
        return (self.planned, self.start) if self.start else None

    @property
    def length(self) -> str:
        """'3-epoch', or a probe's '12-step'."""
        return f"{self.planned}-step" if self.search else f"{self.epochs}-epoch"

    @property
    def label(self) -> str:
        """The slice it trained at, as in the call; a probe's rate (every layer group trains at it)."""
        return f"lr {self.lr_steep:.3g}" if self.search else f"slice({self.lr_min:.3g}, {self.lr_steep:.3g})"

    def to_dict(self) -> dict[str, Any]:
        """The run as plain JSON values (non-finite numbers written as strings)."""
        d = asdict(self)
        d["values"] = [json_floats(row) for row in self.values]
        d["losses"] = json_floats(self.losses)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "run") -> Run:
        """A run from `to_dict`'s form; ValueError naming the field that is missing or wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be an object of a run's fields, got {type(d).__name__}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                if f.name in ("lr_min", "lr_steep", "epochs", "values", "losses", "end_reason"):
                    raise ValueError(f"{where} has no {f.name!r}")
                continue
            kw[f.name] = _field(f.name, d[f.name], where)
        if "start" not in d and kw.get("from_start"):  # written before runs said which start: one unnamed start
            kw["start"] = "the start"
        return cls(**kw)


def json_floats(xs: Any) -> list[float | str | None]:
    """Numbers as JSON takes them (`find_result.json_float`: a non-finite one as 'nan', 'inf' or '-inf')."""
    return [json_float(x) for x in xs]


def plain_floats(xs: Any, what: str) -> list[float]:
    """`json_floats`' list read back; ValueError naming `what` (and the place) for anything but numbers."""
    if not isinstance(xs, list):
        raise ValueError(f"{what} must be a list of numbers ('nan', 'inf' or '-inf' for non-finite ones)")
    return [read_float(f"{what}[{i}]", x) for i, x in enumerate(xs)]


def _column(run: Run, name: str) -> float:
    if not run.values or name not in run.metric_names:
        return math.nan
    i = run.metric_names.index(name) - 1  # values have no epoch column
    row = run.values[-1]
    return float(row[i]) if len(row) > i else math.nan


def _field(name: str, v: Any, where: str) -> Any:
    """One field of a run read from JSON, checked."""
    what = f"{where}: {name!r}"
    if name in ("lr_min", "lr_steep"):
        if not (is_real(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"{what} must be a positive finite number, got {v!r}")
        return float(v)
    if name in ("epochs", "n_iter", "search", "steps"):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            raise ValueError(f"{what} must be a whole number, got {v!r}")
        return v
    if name == "seconds":
        if not is_real(v):
            raise ValueError(f"{what} must be a number, got {v!r}")
        return float(v)
    if name in ("code", "end_reason", "start", "probe"):
        if not isinstance(v, str):
            raise ValueError(f"{what} must be a string, got {v!r}")
        return v
    if name in ("from_start", "loaded", "sweep"):
        if not isinstance(v, bool):
            raise ValueError(f"{what} must be true or false, got {v!r}")
        return v
    if name == "metric_names":
        if not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
            raise ValueError(f"{what} must be a list of names, got {v!r}")
        return v
    if name in ("batches", "iters"):
        if not (isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)):
            raise ValueError(f"{what} must be a list of whole numbers")
        return v
    if name == "values":
        if not isinstance(v, list):
            raise ValueError(f"{what} must be a list of rows of numbers")
        return [plain_floats(row, what) for row in v]
    return plain_floats(v, what)  # losses


def thin(values: Any, n: int = MAX_LOSSES) -> tuple[list[int], list[float]]:
    """At most `n` evenly spaced points of `values` (the first and the last kept), with their indices."""
    a = np.asarray(values, dtype=float)
    if len(a) <= n:
        return list(range(len(a))), a.tolist()
    idx = np.unique(np.linspace(0, len(a) - 1, n).round().astype(np.int64))
    return idx.tolist(), a[idx].tolist()


def sweep_rates(lr_steep: float, n: int = 5) -> list[float]:
    """`n` rates evenly spaced on the log axis over the decade each side of `lr_steep`."""
    return [float(r) for r in lr_steep * np.logspace(-1.0, 1.0, n)]


def outcome(run: Run) -> float:
    """What a run is judged by: its final validation loss, else its final training loss (nan: none)."""
    v = run.valid_loss
    return v if math.isfinite(v) else run.train_loss


def best_index(runs: list[Run]) -> int | None:
    """The index of the run with the lowest final validation loss (training loss without one); None if none has."""
    scored = [(outcome(r), i) for i, r in enumerate(runs) if math.isfinite(outcome(r))]
    return min(scored)[1] if scored else None


def groups(runs: list[Run]) -> list[list[int]]:
    """The runs that can be ranked together, as lists of indices: each group the runs of the same length from the
    same start with two outcomes or more, in the order of their latest run (the most recent group last)."""
    found: dict[tuple, list[int]] = {}
    for j, r in enumerate(runs):
        if r.group is not None:
            found.setdefault(r.group, []).append(j)
    kept = [m for m in found.values() if sum(math.isfinite(outcome(runs[j])) for j in m) >= 2]
    return sorted(kept, key=lambda m: m[-1])


def best_of(runs: list[Run], members: list[int]) -> int | None:
    """The lowest outcome among `members` that did not diverge (None if every one did or has none)."""
    scored = [(outcome(runs[j]), j) for j in members if math.isfinite(outcome(runs[j])) and not runs[j].diverged]
    return min(scored)[1] if scored else None


def called(runs: list[Run], members: list[int]) -> str:
    """What a group is: 'the 1-epoch runs from start 1', 'the 12-step probes from start 1'."""
    first = runs[members[0]]
    if all(runs[j].search for j in members):
        return f"the {first.length} probes from {first.start}"
    return f"the {first.epochs}-epoch runs from {first.start}"


def ranked(runs: list[Run]) -> tuple[list[int], int | None, str]:
    """The runs a widget ranks, its one best, and what they are ('the 1-epoch runs from start 1').

    Runs are ranked only among runs of the same length from the same start (a 3-epoch fit does not compete with
    1-epoch sweep runs, nor a search's 12-step probes, nor a run that went on from earlier training): the most recent
    such group that has two runs with an outcome. The best is the lowest outcome among its runs that did not diverge
    (None if all did)."""
    found = groups(runs)
    if not found:
        return [], None, ""
    members = found[-1]
    return members, best_of(runs, members), called(runs, members)


def save_history(path: str | Path, finds: list[LRFindResult], runs: list[Run]) -> Path:
    """Write the lr_find curves and runs to `path` as JSON."""
    path = Path(path)
    doc = {
        "format": HISTORY_FORMAT,
        "version": HISTORY_VERSION,
        "finds": [f.to_dict() for f in finds],
        "runs": [r.to_dict() for r in runs],
    }
    path.write_text(json.dumps(doc, allow_nan=False, indent=1))
    return path


def load_history(path: str | Path) -> tuple[list[LRFindResult], list[Run]]:
    """The lr_find curves and runs of a history file, every one checked; ValueError for a broken or foreign file."""
    path = Path(path)
    text = path.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not an lrwidget history: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
        raise ValueError(
            f'{path} is not an lrwidget history (no "format": {HISTORY_FORMAT!r}): write one with w.save_history(path)'
        )
    version = doc.get("version")
    if not isinstance(version, int) or version > HISTORY_VERSION:
        raise ValueError(f"{path} is a history of version {version!r}; this lrwidget reads version {HISTORY_VERSION}")
    for key in ("finds", "runs"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{path}: {key!r} must be a list")
    finds = []
    for i, d in enumerate(doc["finds"]):
        try:
            finds.append(LRFindResult.from_dict(d))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: finds[{i}]: {e}") from None
    runs = [Run.from_dict(d, f"{path}: runs[{i}]") for i, d in enumerate(doc["runs"])]
    return finds, runs
