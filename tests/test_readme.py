"""The README's code runs as written (the article's block needs a `dls` of images: tests/test_vision.py runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_first_widget_and_the_use_section_run_as_written(one_torch_thread):
    blocks = [b for b in python_blocks() if "import digits  # scikit-learn's" in b or "suggest_funcs=" in b]
    assert len(blocks) == 3, "the README's first widget, its 'Any model' and its suggest_funcs blocks"
    ns = {}
    exec(compile(blocks[0], str(README), "exec"), ns)  # the first widget: it defines the `model` the others use
    w = ns["w"]
    assert w.find(num_it=30)
    w.wait(60)
    assert w.fit(1)
    w.wait(60)
    assert "fit done: 1 epochs" in w.status and ns["learn"].recorder.values[-1][-1] > 0.5
    torch.manual_seed(0)
    ns["model"] = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    for block in blocks[1:]:
        exec(compile(block, str(README), "exec"), ns)
    assert ns["learn"].recorder.values[-1][-1] > 0.9
    assert list(ns["lrs"]) == [ns["lrs"].minimum, ns["lrs"].steep, ns["lrs"].valley, ns["lrs"].slide]


def block_with(text: str) -> str:
    found = [b for b in python_blocks() if text in b]
    assert len(found) == 1, f"one README block with {text!r}"
    return found[0]


def test_the_hugging_face_block_runs_as_written(one_torch_thread):
    torch.manual_seed(0)
    ns = {}
    exec(compile(block_with("BertForSequenceClassification(config)"), str(README), "exec"), ns)
    learn = ns["learn"]
    assert learn.loss_func is None and len(learn.recorder.values) == 3  # the model's own loss
    assert learn.recorder.values[-1][-1] > 0.9 and ns["w"].learn is learn


def test_the_accumulation_block_runs_as_written(one_torch_thread):
    torch.manual_seed(0)
    ns = {"model": nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))}
    exec(compile(block_with("accum_steps=4)"), str(README), "exec"), ns)
    learn = ns["learn"]
    assert learn.accum_steps == 4 and len(learn.recorder.lrs) == 3 * learn.run.n_iter
    assert learn.run.n_iter == -(-len(learn.dls.train) // 4) and learn.recorder.values[-1][-1] > 0.9


def test_the_timm_block_runs_as_written(one_torch_thread):
    torch.manual_seed(0)
    ns = {}
    exec(compile(block_with('vision_learner(dls, "resnet10t"'), str(README), "exec"), ns)
    learn = ns["learn"]
    assert type(learn.model[0].model).__module__.startswith("timm.") and len(learn.layer_groups) == 2
    assert learn.recorder.values[-1][-1] > 0.3  # one epoch from scratch: well above the 0.1 of chance


def test_the_snapshot_block_runs_as_written(one_torch_thread, capsys):
    import os

    torch.manual_seed(0)
    ns = {}
    exec(compile(block_with('snapshot="disk"'), str(README), "exec"), ns)
    said = capsys.readouterr().out.strip()
    assert " on disk in " in said and ns["learn"].snapshot == "disk"
    assert not os.path.exists(said.split(" on disk in ", 1)[1])  # the copy is gone
    assert ns["learn"].recorder.values[-1][1] < 1.0
