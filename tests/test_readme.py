"""The README's code runs as written (the article's block needs a `dls` of images: tests/test_vision.py runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_use_section_runs_as_written(one_torch_thread):
    blocks = [b for b in python_blocks() if "from lrwidget.data import digits" in b or "suggest_funcs=" in b]
    assert len(blocks) == 2, "the README's 'Any model' and suggest_funcs blocks"
    torch.manual_seed(0)
    ns = {"model": nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)
    assert ns["learn"].recorder.values[-1][-1] > 0.9
    assert list(ns["lrs"]) == [ns["lrs"].minimum, ns["lrs"].steep, ns["lrs"].valley, ns["lrs"].slide]
