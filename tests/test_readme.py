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
    blocks = [b for b in python_blocks() if "from lrwidget.data import digits" in b or "suggest_funcs=" in b]
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
