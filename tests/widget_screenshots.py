"""Screenshots of the widget as a person sees it in JupyterLab: light, dark, narrow (a ~470 px output area) and wide.

    .venv/bin/python tests/widget_screenshots.py docs/screenshots [--prefix before-]

The quick-start model on the digits: Find LR, a 3-epoch Fit from the start, then the default Sweep (1-epoch fits
over a decade each side of lr_steep) and a 1-epoch fit at lr 3, which diverges. Each picture is the browser's
viewport; `-full` ones show the whole widget in a tall viewport. Every wait is for an event (the kernel's reply, an
element, the charts laid out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jupyter_browser import Lab, jupyter_server, launch_chromium, write_notebook  # noqa: E402

CELLS = [
    "import torch\nfrom torch import nn\nfrom lrwidget import Learner, LRWidget, accuracy\n"
    "from lrwidget.data import digits\n"
    "torch.manual_seed(0)\n"
    "learn = Learner(digits(), nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), metrics=accuracy)",
    "w = LRWidget(learn, epochs=3)\nw",
]
JS_THEME = "(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})"
JS_LEFT = """(open) => { const s = window.jupyterapp.shell;
  if (open) s.activateById('filebrowser'); else s.collapseLeft(); }"""
# every chart drawn at its box's width: bqplot redraws a figure's inside a moment after its box is resized (until
# then its axes and plot area keep the old size); one out of view (of the notebook's scroller) is redrawn when seen
JS_LAID_OUT = """() => [...document.querySelectorAll('.lrw-root .bqplot')].every(f => {
  const b = f.getBoundingClientRect(), col = f.parentElement.getBoundingClientRect();
  let v = f.parentElement;
  while (v && !(/(auto|scroll)/.test(getComputedStyle(v).overflowY) && v.scrollHeight > v.clientHeight + 1))
    v = v.parentElement;
  const view = v ? v.getBoundingClientRect() : {top: 0, bottom: window.innerHeight};
  if (f.offsetParent === null || b.bottom <= Math.max(view.top, 0) || b.top >= Math.min(view.bottom, innerHeight))
    return true;
  const inside = e => { const r = e.getBoundingClientRect(); return r.left >= b.left - 1 && r.right <= b.right + 1; };
  const parts = [...f.querySelectorAll('svg, rect.plotarea_background, g.axis path.domain')];
  const svg = f.querySelector('svg');  // drawn at the box's width: not still at a narrower layout's
  return b.right <= col.right + 1 && parts.length >= 3 && parts.every(inside)
    && svg.getBoundingClientRect().width >= b.width - 2; })"""
JS_OUTPUT_NEAR = "(w) => Math.abs(document.querySelector('.lrw-root').getBoundingClientRect().width - w) < 30"
JS_OUTPUT_WIDTH = """() => { const o = document.querySelector('.jp-OutputArea-output .lrw-root')
  || document.querySelector('.jp-OutputArea-output .widget-vbox');
  return o ? o.getBoundingClientRect().width : null; }"""


def prepare(lab: Lab) -> None:
    """Find LR, one 3-epoch fit from the start, the default sweep; wait for each in the kernel."""
    lab.kernel("w.from_start = True; w.find(); w.wait()", timeout=180_000)
    lab.kernel("w.fit(); w.wait()", timeout=300_000)
    lab.kernel("w.sweep(); w.wait()", timeout=600_000)
    lab.kernel("w.sweep(lrs=[3.0]); w.wait()", timeout=600_000)  # far past the minimum: it diverges
    lab.page.wait_for_function(
        "() => document.querySelectorAll('.lrw-run-row').length >= 7", timeout=60_000, polling=250
    )


def settle(page, width: int, height: int, sidebar: bool | None = None, output: int | None = None) -> None:
    """Resize the window (and open or close the file browser), then wait: for the window's new width, for the
    output area's width near `output` (or two frames, in which JupyterLab lays its panels out), for the charts."""
    page.set_viewport_size({"width": width, "height": height})
    if sidebar is not None:
        page.evaluate(JS_LEFT, sidebar)
    page.wait_for_function("(w) => window.innerWidth === w", arg=width, timeout=30_000)
    if output is None:
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    else:
        page.wait_for_function(JS_OUTPUT_NEAR, arg=output, timeout=30_000, polling=100)
    page.wait_for_function(JS_LAID_OUT, timeout=30_000, polling=100)


def shoot(lab: Lab, path: Path, width: int, height: int, full: bool = False, sidebar: bool | None = None) -> None:
    page = lab.page
    settle(page, width, height, sidebar)
    widget = page.locator(".jp-OutputArea-output .widget-vbox").first
    widget.scroll_into_view_if_needed()
    page.screenshot(path=str(path), full_page=full)
    print(path, "output width", page.evaluate(JS_OUTPUT_WIDTH))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--prefix", default="")
    p.add_argument("--widget", type=Path, help="also the widget alone at 1,400 px, light (docs/widget.png)")
    p.add_argument("--search", action="store_true", help="also search.png: Find LR with repeats, then a search")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        root = Path(tmp) / "root"
        root.mkdir()
        write_notebook(root / "widget.ipynb", CELLS)
        with jupyter_server(root) as server:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            lab = Lab(page, server)
            lab.open("widget.ipynb")
            page.evaluate(JS_LEFT, False)
            lab.run_all()
            page.wait_for_selector("text=Find LR", timeout=120_000)
            lab.wait_kernel("'w' in globals()", timeout=120)
            prepare(lab)
            out = a.out
            shoot(lab, out / f"{a.prefix}light.png", 1400, 1000)
            shoot(lab, out / f"{a.prefix}light-full.png", 1400, 2800)
            if a.widget:
                page.locator(".lrw-root").screenshot(path=str(a.widget))
            shoot(lab, out / f"{a.prefix}wide.png", 1920, 1080)
            shoot(lab, out / f"{a.prefix}narrow.png", 900, 1000, sidebar=True)
            shoot(lab, out / f"{a.prefix}narrow-full.png", 900, 3200)
            shoot(lab, out / f"{a.prefix}narrow-no-sidebar.png", 900, 1000, sidebar=False)
            if a.search:  # Find LR with 3 repeats, then a search: its probes in the runs column and their chart
                lab.kernel("w.find(repeats=3); w.wait(); w.search(); w.wait()", timeout=600_000)
                menu = "w.history.sensitivity.menu"
                probes = f"[o for o in {menu}.options if 'probes' in o]"
                lab.kernel(f"{menu}.value = max({probes}, key=lambda o: int(o.rsplit('(', 1)[1][:-1]))")  # the sweep's
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.lrw-root svg text')]"
                    ".some(t => t.textContent.startsWith('search best'))",
                    timeout=60_000,
                )
                shoot(lab, out / f"{a.prefix}search.png", 1920, 1500)
            page.evaluate(JS_THEME, "JupyterLab Dark")
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            shoot(lab, out / f"{a.prefix}dark.png", 1400, 1000)
            shoot(lab, out / f"{a.prefix}dark-full.png", 1400, 2800)
            browser.close()


if __name__ == "__main__":
    main()
