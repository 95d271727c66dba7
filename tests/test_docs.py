"""The Python blocks of the docs pages run as written.

Two need what a page cannot build in a few lines: the article's code (a `dls` of images) is run by
tests/test_vision.py, and the num_processes block (a `dls` and `model` of your own, in worker processes) by
tests/test_distributed.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from lrwidget import Learner, LRWidget, accuracy
from lrwidget.data import digits

DOCS = Path(__file__).resolve().parent.parent / "docs"

# the text that names each block run here, and the page it is on
RUN = {
    "getting-started.md": ["LRWidget(learn, epochs=3)", "metrics=accuracy)  # loss:", "suggest_funcs="],
    "widget.md": ["LRWidget(learn, epochs=5)", "w.sweep(lrs="],
    "training.md": ["BertForSequenceClassification(config)", 'vision_learner(dls, "resnet10t"', "accum_steps=4)"],
    "state-copies.md": ['snapshot="disk"'],
    "choosing-a-rate.md": ["learn.lr_search(epochs=5, budget=1.5)", "learn.lr_find(repeats=3)"],
}
RUN_ELSEWHERE = ["cnn_learner(dls, resnet34", "num_processes=2)"]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def block_with(page: str, text: str) -> str:
    found = [b for b in python_blocks(page) if text in b]
    assert len(found) == 1, f"one block of docs/{page} with {text!r}"
    return found[0]


def run(page: str, text: str, ns: dict) -> dict:
    exec(compile(block_with(page, text), str(DOCS / page), "exec"), ns)
    return ns


def digits_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def test_every_block_is_run_by_a_test():
    for path in sorted(DOCS.glob("*.md")):
        for block in python_blocks(path.name):
            texts = RUN.get(path.name, []) + RUN_ELSEWHERE
            assert any(t in block for t in texts), f"docs/{path.name}: a block no test runs:\n{block}"


def test_the_getting_started_blocks_run_as_written(one_torch_thread):
    ns = run("getting-started.md", "LRWidget(learn, epochs=3)", {})
    assert isinstance(ns["w"], LRWidget)
    ns["model"] = digits_mlp()
    run("getting-started.md", "metrics=accuracy)  # loss:", ns)
    run("getting-started.md", "suggest_funcs=", ns)
    assert ns["learn"].recorder.values[-1][-1] > 0.9
    assert list(ns["lrs"]) == [ns["lrs"].minimum, ns["lrs"].steep, ns["lrs"].valley, ns["lrs"].slide]


def test_the_widget_blocks_run_as_written(one_torch_thread):
    ns = run("widget.md", "LRWidget(learn, epochs=5)", {"learn": Learner(digits(), digits_mlp(), metrics=accuracy)})
    w = ns["w"]
    assert w.epochs == 5 and w.find(num_it=30)
    w.wait(60)
    run("widget.md", "w.sweep(lrs=", ns)
    runs, best = w.runs, ns["best"]
    assert len(runs) == 3 and all(r.from_start for r in runs)
    assert (w.lr_min, w.lr_steep) == (runs[best].lr_min, runs[best].lr_steep)


def test_the_hugging_face_block_runs_as_written(one_torch_thread):
    torch.manual_seed(0)
    ns = run("training.md", "BertForSequenceClassification(config)", {})
    learn = ns["learn"]
    assert learn.loss_func is None and len(learn.recorder.values) == 3  # the model's own loss
    assert learn.recorder.values[-1][-1] > 0.9 and ns["w"].learn is learn


def test_the_accumulation_block_runs_as_written(one_torch_thread):
    learn = run("training.md", "accum_steps=4)", {"model": digits_mlp()})["learn"]
    assert learn.accum_steps == 4 and len(learn.recorder.lrs) == 3 * learn.run.n_iter
    assert learn.run.n_iter == -(-len(learn.dls.train) // 4) and learn.recorder.values[-1][-1] > 0.9


def test_the_timm_block_runs_as_written(one_torch_thread):
    torch.manual_seed(0)
    learn = run("training.md", 'vision_learner(dls, "resnet10t"', {})["learn"]
    assert type(learn.model[0].model).__module__.startswith("timm.") and len(learn.layer_groups) == 2
    assert learn.recorder.values[-1][-1] > 0.3  # one epoch from scratch: well above the 0.1 of chance


def test_the_snapshot_block_runs_as_written(one_torch_thread, capsys):
    torch.manual_seed(0)
    learn = run("state-copies.md", 'snapshot="disk"', {})["learn"]
    said = capsys.readouterr().out.strip()
    assert " on disk in " in said and learn.snapshot == "disk"
    assert not os.path.exists(said.split(" on disk in ", 1)[1])  # the copy is gone
    assert learn.recorder.values[-1][1] < 1.0


def test_the_choosing_blocks_run_as_written(one_torch_thread):
    learn = Learner(digits(), digits_mlp(), metrics=accuracy)
    ns = run("choosing-a-rate.md", "learn.lr_find(repeats=3)", {"learn": learn})
    res = ns["res"]
    assert res.repeats == 3 and len(res.band[0]) == len(res.lrs) and set(res.spread) >= {"lr_min", "lr_steep"}
    ns = run("choosing-a-rate.md", "learn.lr_search(epochs=5, budget=1.5)", {"learn": learn})
    s = ns["s"]
    assert s.cost <= 1.5 and s.find is res and learn.recorder.values[-1][-1] > 0.9  # the fit at s.best learns
