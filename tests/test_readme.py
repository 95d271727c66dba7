"""The README's example runs as written; the docs' blocks are run by tests/test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def example() -> str:
    """The README's one Python block: the ten-line example."""
    blocks = python_blocks(README)
    assert len(blocks) == 1, "the README has one Python block, the ten-line example"
    return blocks[0]


def test_the_example_is_ten_lines_and_the_getting_started_page_has_it():
    assert len(example().strip().splitlines()) <= 10
    assert example() in python_blocks(ROOT / "docs" / "getting-started.md")


def test_the_example_runs_as_written(one_torch_thread):
    ns = {}
    exec(compile(example(), str(README), "exec"), ns)
    w = ns["w"]
    assert w.find(num_it=30)
    w.wait(60)
    assert w.fit(1)
    w.wait(60)
    assert "fit done: 1 epochs" in w.status and ns["learn"].recorder.values[-1][-1] > 0.5
