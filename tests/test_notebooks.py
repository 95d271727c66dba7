"""Every notebook in notebooks/ runs top to bottom as it is, offline, on CPU, and shows what its text says.

Each notebook runs in a fresh kernel (nbclient) in a temporary working directory. Two cells are added to the
copy that runs, never to the file: one first, which checks that the kernel is this test's Python and refuses
the network inside the kernel as tests/conftest.py does in this process; one last, which prints what the
notebook computed as JSON, for the assertions below. The notebooks are stored without outputs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # each notebook runs in a fresh kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REQUIRED = [
    "quickstart.ipynb",
    "lr_range_test.ipynb",
    "one_cycle.ipynb",
    "article.ipynb",
    "compare_rates.ipynb",
    "choosing_well.ipynb",
]
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"
PROBE = "NOTEBOOK-TEST-PROBE "

GUARD = f"""
import socket as _socket, sys as _sys
from pathlib import Path as _Path
import lrwidget as _lrwidget
assert _sys.prefix == {sys.prefix!r}, f"the kernel runs {{_sys.executable}}, not the test's Python {sys.executable!r}"
assert _Path(_lrwidget.__file__).resolve().parent == _Path({str(ROOT / "lrwidget")!r}), _lrwidget.__file__
_LOCAL = ("127.", "localhost", "::1", "0.0.0.0")
_connect, _getaddrinfo = _socket.socket.connect, _socket.getaddrinfo
def _offline_connect(self, address, _connect=_connect):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not str(address[0]).startswith(_LOCAL):
        raise OSError(f"notebooks must run offline (connect to {{address!r}})")
    return _connect(self, address)
def _offline_getaddrinfo(host, *a, _getaddrinfo=_getaddrinfo, **k):
    if isinstance(host, str) and not host.startswith(_LOCAL):
        raise OSError(f"notebooks must run offline (lookup of {{host!r}})")
    return _getaddrinfo(host, *a, **k)
_socket.socket.connect, _socket.getaddrinfo = _offline_connect, _offline_getaddrinfo
del _socket, _sys, _Path, _lrwidget, _connect, _getaddrinfo
"""

# The last cell of each notebook's test copy: what it computed, as JSON.
PROBES = {
    "quickstart.ipynb": """{
        "widget": type(w).__name__, "epochs": w.epochs, "lr_min": w.lr_min, "lr_steep": w.lr_steep, "code": w.code,
        "find": [learn.recorder.lr_find_result.lr_min, learn.recorder.lr_find_result.lr_steep],
        "values": learn.recorder.values, "metric_names": learn.recorder.metric_names}""",
    "lr_range_test.ipynb": """{
        "use_mnist": USE_MNIST, "suggestions": res.suggestions, "lr_at_minimum": res.points["lr_min"][0],
        "lrs": lrs, "accuracy": {name: rec.values[-1][2] for name, rec in runs.items()}, "lines": len(lines)}""",
    "one_cycle.ipynb": """{
        "use_cifar10": USE_CIFAR10, "lr_max": lr_max, "lr_min": res.lr_min, "groups": len(learn.layer_groups),
        "group_peaks": np.array(groups.lrs).max(0).tolist(), "sched_lrs": len(runs["one cycle, slice"].lrs),
        "moms": [min(runs["one cycle, slice"].moms), max(runs["one cycle, slice"].moms)],
        "accuracy": {name: [v[2] for v in rec.values] for name, rec in runs.items()}, "marks": len(marks)}""",
    "article.ipynb": """{
        "lr_min": lr_min, "lr_steep": lr_steep, "groups": len(learn.layer_groups),
        "values": learn.recorder.values, "metric_names": learn.recorder.metric_names,
        "pretrained": any(not p.requires_grad for p in learn.model.parameters())}""",
    "compare_rates.ipynb": """{
        "lr": lr, "find": [learn.recorder.lr_find_result.lr_min, learn.recorder.lr_find_result.lr_steep],
        "runs": [{"lr_min": r.lr_min, "lr_steep": r.lr_steep, "epochs": r.epochs, "from_start": r.from_start,
                  "end_reason": r.end_reason, "valid_loss": r.valid_loss, "accuracy": r.metrics["accuracy"]}
                 for r in w.runs],
        "from_start": w.from_start, "best": best, "markers": [w.lr_min, w.lr_steep],
        "rates": list(w.chart_view.rates.x), "colors": list(w.chart_view.rates.colors),
        "history": path.is_file(), "loaded": [r.loaded for r in other.runs]}""",
    "choosing_well.ipynb": """{
        "find_status": find_status, "markers": [at_markers.lr_min, at_markers.lr_steep],
        "at_markers": at_markers.metrics["accuracy"], "at_markers_loss": at_markers.valid_loss,
        "best": s.best, "at_best": at_best.metrics["accuracy"], "at_best_loss": at_best.valid_loss,
        "at_best_lrs": [at_best.lr_min, at_best.lr_steep], "cost": s.cost, "budget": s.budget, "plateau": s.plateau,
        "probes": len(s.lrs), "search_runs": sum(r.search == 1 for r in w.runs), "code_best": s2.best,
        "sweep": [[r.lr_steep, r.metrics["accuracy"]] for r in w.runs[-13:]],
        "chart": len(w.history.sensitivity.members), "picks": w.history.sensitivity.chart.pick.x.tolist(),
        "heading": w.history.sensitivity.heading.value}""",
}

# The article's lines, as written (with the one change: pretrained=False)
ARTICLE_LINES = [
    "from lrwidget import *",
    "from torchvision.models import resnet34",
    "learn = cnn_learner(dls, resnet34, metrics=accuracy, pretrained=False)",
    "lr_min, lr_steep = learn.lr_find()",
    "learn.fit_one_cycle(10, lr_max=slice(lr_min, lr_steep))",
    "learn.recorder.plot_loss()",
]


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def code_of(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, dict | None]:
    """Execute a copy of the notebook in a fresh kernel, in tmp_path; return it and its probe's JSON."""
    nb = read(name)
    nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    probe = PROBES.get(name)
    if probe:
        nb.cells.append(
            nbformat.v4.new_code_cell(
                f"import json as _json, numpy as _np\n"
                f"print({PROBE!r} + _json.dumps({probe}, "
                f"default=lambda o: o.tolist() if hasattr(o, 'tolist') else str(o)))"
            )
        )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached pretrained weights
    monkeypatch.setenv("CI", "true")
    client = NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    if not probe:
        return nb, None
    text = "".join(o.text for o in nb.cells[-1].outputs if o.output_type == "stream" and o.name == "stdout")
    line = next(ln for ln in text.splitlines() if ln.startswith(PROBE))
    return nb, json.loads(line[len(PROBE) :])


def displays_widget(nb: nbformat.NotebookNode, source_part: str) -> bool:
    """Whether the cell whose source contains source_part displayed an ipywidget (bqplot Figure, LRWidget)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and source_part in c.source]
    assert cells, f"no cell with {source_part!r}"
    return any(WIDGET in o.get("data", {}) for o in cells[0].outputs)


# -- static checks: fast, no kernel ----------------------------------------------------------------------------


def test_the_notebooks_are_there():
    missing = [n for n in REQUIRED if not (NOTEBOOKS / n).is_file()]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("name", ALL)
def test_stored_without_outputs_and_valid(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    dirty = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{name}: clear the outputs of cells {dirty} before committing"


@pytest.mark.parametrize("name", ALL)
def test_downloads_are_opt_in(name):
    """A USE_<DATASET> switch at the top, off by default: the default path never downloads."""
    flags = re.findall(r"^(USE_\w+)\s*=\s*(\w+)", "\n".join(code_of(read(name))), re.M)
    assert all(value == "False" for _, value in flags), f"{name}: opt-in switches must default to False: {flags}"
    for source in code_of(read(name)):
        if "download=True" in source:
            assert re.search(r"^if USE_\w+:", source, re.M), f"{name}: a download outside an opt-in switch"
    if name in ("lr_range_test.ipynb", "one_cycle.ipynb"):
        assert flags, f"{name}: the larger torchvision dataset must be offered as a USE_... = False switch"


def test_article_code_as_written():
    sources = "\n".join(code_of(read("article.ipynb")))
    lines = {ln.strip() for ln in sources.splitlines()}
    assert [ln for ln in ARTICLE_LINES if ln not in lines] == []


# -- the notebooks, run ----------------------------------------------------------------------------------------


@pytest.mark.timeout(1200)
def test_quickstart(tmp_path, monkeypatch):
    nb, r = run("quickstart.ipynb", tmp_path, monkeypatch)
    assert r["widget"] == "LRWidget" and displays_widget(nb, "LRWidget(learn")
    assert [r["lr_min"], r["lr_steep"]] == pytest.approx(r["find"]), "the markers start at lr_find's suggestions"
    assert r["code"] == f"learn.fit_one_cycle(5, lr_max=slice({r['lr_min']!r}, {r['lr_steep']!r}))"
    assert len(r["values"]) == r["epochs"] == 5
    assert r["metric_names"][3] == "accuracy"
    assert r["values"][-1][2] >= 0.9, f"quick start ends at accuracy {r['values'][-1][2]:.3f}"
    assert displays_widget(nb, "plot_loss()")


@pytest.mark.timeout(1200)
def test_lr_range_test(tmp_path, monkeypatch):
    nb, r = run("lr_range_test.ipynb", tmp_path, monkeypatch)
    assert r["use_mnist"] is False
    s = r["suggestions"]
    assert all(s[k] is not None for k in ("lr_min", "lr_steep", "valley", "slide")), s
    assert s["lr_steep"] <= r["lr_at_minimum"], "lr_steep is searched only up to the minimum"
    assert displays_widget(nb, "plot_lr_find()"), "the four suggestions on the curve"
    acc = r["accuracy"]
    assert list(acc) == ["too low", "good", "too high"] and r["lines"] == 3
    assert displays_widget(nb, "    marks=lines,"), "the three fits in one chart"
    assert acc["good"] >= 0.9, acc
    assert acc["too low"] < acc["good"] - 0.3 and acc["too high"] < acc["good"] - 0.2, acc
    assert r["lrs"]["too low"] < s["lr_steep"] < r["lrs"]["too high"]


@pytest.mark.timeout(1200)
def test_one_cycle(tmp_path, monkeypatch):
    nb, r = run("one_cycle.ipynb", tmp_path, monkeypatch)
    assert r["use_cifar10"] is False
    assert r["groups"] == 3 and r["lr_max"] == r["lr_min"]
    peaks = r["group_peaks"]  # slice(lr_max/10, lr_max) over three groups: geometric, the head at lr_max
    assert [p / peaks[2] for p in peaks] == pytest.approx([0.1, 10**-0.5, 1.0], rel=1e-9)
    assert peaks[2] == pytest.approx(r["lr_max"], rel=1e-2)  # the batch nearest the peak of the cycle
    assert r["moms"] == pytest.approx([0.85, 0.95], abs=1e-3)
    assert displays_widget(nb, "plot_sched()") and displays_widget(nb, "g = np.array(groups.lrs)")
    acc = {name: a[-1] for name, a in r["accuracy"].items()}
    assert list(acc) == ["one cycle, slice", "one cycle", "constant"] and r["marks"] == 3
    assert all(len(a) == 5 for a in r["accuracy"].values())
    assert acc["one cycle"] >= 0.9 and acc["one cycle, slice"] >= 0.9, acc
    assert min(acc["one cycle"], acc["one cycle, slice"]) > acc["constant"], (
        f"the notebook says one cycle beats a constant rate at the same peak: {acc}"
    )


@pytest.mark.timeout(1200)
def test_article(tmp_path, monkeypatch):
    nb, r = run("article.ipynb", tmp_path, monkeypatch)
    assert r["groups"] == 3 and not r["pretrained"]
    assert len(r["values"]) == 10 and r["metric_names"][3] == "accuracy"
    assert r["lr_min"] > 0 and r["lr_steep"] > 0
    assert r["values"][-1][2] >= 0.6, f"resnet34 on 512 digits ends at accuracy {r['values'][-1][2]:.3f}"
    assert displays_widget(nb, "learn.lr_find()") and displays_widget(nb, "plot_loss()")


@pytest.mark.timeout(1200)
def test_compare_rates(tmp_path, monkeypatch):
    nb, r = run("compare_rates.ipynb", tmp_path, monkeypatch)
    assert displays_widget(nb, "LRWidget(learn, epochs=5)")
    lr, runs = r["lr"], r["runs"]
    assert lr == pytest.approx(r["find"][1]), "the rate tested is lr_find's lr_steep, the marker"
    assert len(runs) == 3 and r["from_start"] is True
    assert all(x["from_start"] and x["end_reason"] == "completed" and x["epochs"] == 5 for x in runs), runs
    assert [x["lr_steep"] for x in runs] == pytest.approx([lr / 10, lr, lr * 10], rel=1e-9)
    ratio = r["find"][0] / r["find"][1]  # each slice keeps the markers' ratio
    assert [x["lr_min"] / x["lr_steep"] for x in runs] == pytest.approx([ratio] * 3, rel=1e-9)
    low, marker, high = runs
    # on the digits MLP (seed 0, 5 epochs): valid loss 0.392 / 0.088 / 0.224, accuracy 0.936 / 0.975 / 0.950
    assert marker["valid_loss"] < low["valid_loss"] - 0.15 and marker["accuracy"] > low["accuracy"] + 0.02, runs
    assert marker["valid_loss"] < high["valid_loss"] - 0.05, runs
    losses = [x["valid_loss"] for x in runs]
    assert r["best"] == losses.index(min(losses)) == 1, f"the notebook says the marker's run does best: {losses}"
    assert r["markers"] == pytest.approx([marker["lr_min"], marker["lr_steep"]]), "use_run(best) moved the markers"
    assert r["rates"] == pytest.approx([x["lr_steep"] for x in runs]), "the map of rates: one point per run"
    worst = losses.index(max(losses))
    from lrwidget.widget.runs_panel import rate_colors  # imported here, not at collection: it brings in bqplot

    green, red = rate_colors([0.0, 1.0])  # the map's colours for the best and the worst
    assert r["colors"][r["best"]] == green and r["colors"][worst] == red, r["colors"]
    assert r["history"] and r["loaded"] == [True, True, True]


@pytest.mark.timeout(1200)
def test_choosing_well(tmp_path, monkeypatch):
    nb, r = run("choosing_well.ipynb", tmp_path, monkeypatch)
    assert displays_widget(nb, "LRWidget(learn, epochs=5)") and displays_widget(nb, "w.history.sensitivity")
    # sparse parity: lr_find's curve is flat until it diverges; the widget says so
    assert "flat curve, try Search" in r["find_status"], r["find_status"]
    # the fit at the markers stays at chance; the fit at the search's best learns the task
    assert r["at_markers"] < 0.6 and r["at_markers_loss"] > 0.65, r
    assert r["at_best"] > 0.95 and r["at_best_loss"] < r["at_markers_loss"] - 0.5, r
    assert r["at_best_lrs"][1] == r["best"] and r["markers"][1] < r["best"] / 100, r
    assert r["plateau"] is True and r["cost"] <= r["budget"] == 1.5 and r["search_runs"] == r["probes"] >= 3, r
    assert r["code_best"] == pytest.approx(r["best"], rel=1e-9), "the same search from code picks the same rate"
    # the sensitivity curve of the 5-epoch fits: chance at the markers' rates, the task learnt around the best
    acc = dict((lr, a) for lr, a in r["sweep"])
    assert all(a < 0.6 for lr, a in acc.items() if lr <= 1e-4) and max(acc.values()) > 0.95, acc
    assert any(a > 0.95 and r["best"] / 10 <= lr <= r["best"] * 10 for lr, a in acc.items()), acc
    assert r["chart"] == 15 and "the 5-epoch runs from start 1: 15 runs" in r["heading"], r["heading"]
    assert "search best" in r["heading"] and len(r["picks"]) == 2, r


@pytest.mark.timeout(1200)
def test_other_notebooks_run(tmp_path, monkeypatch):
    """A notebook added beside the five runs too (a loop, not a parametrisation that would skip when empty)."""
    for name in ALL:
        if name not in REQUIRED:
            (tmp_path / name).mkdir()
            run(name, tmp_path / name, monkeypatch)
