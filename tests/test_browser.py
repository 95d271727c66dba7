"""The widget used with a mouse in a real browser: JupyterLab 4 and Notebook 7, Debian's Chromium, Playwright."""

from __future__ import annotations

import math
import re

import pytest
from jupyter_browser import (
    ARTIFACTS,
    Lab,
    jupyter_server,
    launch_chromium,
    require_browser,
    require_voila,
    voila_server,
    write_notebook,
)

SETUP = [
    "import torch\nfrom torch import nn\nfrom lrwidget import Learner, LRWidget, accuracy\n"
    "from lrwidget.data import digits",
    "torch.manual_seed(0)\n"
    "learn = Learner(digits(), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), metrics=accuracy)\n"
    "w = LRWidget(learn, epochs=2)\nw",
]
pytestmark = pytest.mark.slow  # each test starts a Jupyter server, a kernel and Chromium
APP_CORE = re.compile(r"/static/(notebook/notebook_core|lab/jlab_core)\.")
COLORS = {"lr_min": "rgb(161, 74, 0)", "lr_steep": "rgb(196, 22, 28)"}  # style.COLORS, light theme

# centre of a marker's handle: the diamond (no arcs, unlike the round suggestion points) of the marker's colour
JS_HANDLE = """(color) => {
  const dots = [...document.querySelectorAll('g.object_grp > path.dot')].filter(
      p => getComputedStyle(p).fill === color && !(p.getAttribute('d') || '').includes('A'));
  if (dots.length !== 1) return null;
  const r = dots[0].getBoundingClientRect();
  const x = r.x + r.width / 2, y = r.y + r.height / 2;
  const top = document.elementFromPoint(x, y);
  return {x, y, top: top === dots[0]};
}"""

# the lr axis of the chart holding the handles: pixel x and value of each tick ("1e-5"; d3 writes a U+2212 minus)
JS_TICKS = """() => {
  const dot = document.querySelector('g.object_grp > path.dot');
  const svg = dot.closest('.bqplot');
  const out = [];
  for (const t of svg.querySelectorAll('g.axis g.tick')) {
    const txt = (t.textContent || '').replace('\\u2212', '-').trim();
    if (!/^[0-9.]+e[-+]?[0-9]+$/.test(txt)) continue;
    const line = t.querySelector('line') || t;
    const r = line.getBoundingClientRect();
    out.push([r.x + r.width / 2, parseFloat(txt)]);
  }
  return out;
}"""


def lr_at(ticks: list, px: float) -> float:
    """What the log axis says at pixel `px`, from its outermost ticks."""
    (x0, v0), (x1, v1) = min(ticks), max(ticks)
    return 10 ** (math.log10(v0) + (px - x0) / (x1 - x0) * (math.log10(v1) - math.log10(v0)))


def handle(lab: Lab, name: str) -> dict:
    lab.page.wait_for_function(f"() => ({JS_HANDLE})({COLORS[name]!r}) !== null", timeout=30_000)
    return lab.page.evaluate(JS_HANDLE, COLORS[name])


def drag(lab: Lab, name: str, dx: float) -> float:
    """Drag a marker's handle by dx pixels with the mouse; return the pixel x where it was let go."""
    h = handle(lab, name)
    assert h["top"], f"the {name} handle is covered at its centre"
    m = lab.page.mouse
    m.move(h["x"], h["y"])
    m.down()
    for i in range(1, 11):
        m.move(h["x"] + dx * i / 10, h["y"])
    m.up()
    return h["x"] + dx


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def watch_errors(lab: Lab) -> Lab:
    page = lab.page
    lab.errors = []  # the console's errors: bqplot logs SVG attribute errors for a figure drawn hidden
    page.on("console", lambda m: m.type == "error" and lab.errors.append(f"{m.text} ({m.location.get('url')})"))
    page.on("pageerror", lambda e: lab.errors.append(f"{e} {(e.stack or '')[:600]}"))
    return lab


def page_errors(lab: Lab) -> list[str]:
    """The errors the page logged, but for those thrown from the front end's own core bundle (Notebook 7 7.x now
    and then throws "reading 'schema'" in its settings loader, a frame of its own code, not of a widget's)."""
    return [e for e in lab.errors if not APP_CORE.search(e.split("\n    at ")[1] if "\n    at " in e else "")]


def open_widget(browser, server, request, name: str) -> Lab:
    write_notebook(server.root / f"{name}.ipynb", SETUP)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    lab = watch_errors(Lab(page, server))
    request.node.lab = lab
    lab.open(f"{name}.ipynb")
    lab.run_all()
    lab.wait_kernel("'w' in globals()", timeout=120)
    page.wait_for_selector("text=Find LR", timeout=60_000)
    return lab


@pytest.fixture
def server(request, tmp_path):
    """A Jupyter server of the kind the test's `app` mark names, stopped in all cases."""
    root = tmp_path / "root"
    root.mkdir()
    with jupyter_server(root, request.node.get_closest_marker("app").args[0]) as s:
        yield s


@pytest.fixture
def shot_on_failure(server, request):
    """On failure, save a screenshot of the page (before the server stops) and print its path."""
    yield
    rep = getattr(request.node, "rep_call", None)
    lab = getattr(request.node, "lab", None)
    if lab is not None and rep is not None and rep.failed:
        print(f"\nscreenshot of the failing page: {lab.screenshot(request.node.name)}")


JS_CURVES = """() => [...document.querySelectorAll('path.line')].filter(p => (p.getAttribute('d') || '').length > 100)
    .length >= 2"""


def find_lr(lab: Lab) -> None:
    """Click Find LR; wait for the result in the kernel, then on the page (drawn after the kernel has it)."""
    lab.page.get_by_role("button", name="Find LR").click()
    lab.wait_kernel("w.result is not None and not w.busy", timeout=120)
    wait_status(lab.page, "lr_find done", 60)
    lab.page.wait_for_function(JS_CURVES, timeout=30_000)  # the smoothed and raw curves, drawn


def fit_and_check(lab: Lab, epochs: int) -> None:
    """Click Fit one cycle; the run must use the bound values, and the page must show its end."""
    lab.page.get_by_role("button", name="Fit one cycle").click()
    lab.wait_kernel(f"len(learn.recorder.values) == {epochs} and not w.busy", timeout=180)
    lo, hi = lab.value("(w.lr_min, w.lr_steep)")
    peak = lab.value("max(learn.recorder.lrs)")
    assert peak == pytest.approx(hi, rel=1e-9)  # one parameter group: slice(lr_min, lr_steep) gives lr_steep
    assert lab.value("w.code") == f"learn.fit_one_cycle({epochs}, lr_max=slice({lo!r}, {hi!r}))"
    lab.page.wait_for_function(
        "() => [...document.querySelectorAll('.progress-bar')].some(b => b.style.width === '100%')", timeout=30_000
    )
    # the table's last rows reach the page after the progress bar's 100%: wait for them, then count
    lab.page.wait_for_function(
        f"() => document.querySelectorAll('table tbody tr').length >= {epochs}", timeout=30_000
    )  # fmt: skip
    assert lab.page.locator("table tbody tr").count() == epochs


@pytest.mark.app("lab")
def test_lab_drag_type_fit_stop(browser, server, request, shot_on_failure):
    lab = open_widget(browser, server, request, "lab_widget")
    find_lr(lab)
    page = lab.page
    assert page.locator("path.line").count() >= 2  # smoothed and raw curves
    for name in COLORS:
        handle(lab, name)
        assert page.locator(f"text={name}").count() >= 1  # the marker labels
    ticks = page.evaluate(JS_TICKS)
    assert len(ticks) >= 2, ticks

    lo0, hi0 = lab.value("(w.lr_min, w.lr_steep)")
    x = drag(lab, "lr_steep", 40)  # away from lr_min: past it, it would push lr_min along
    lab.wait_kernel(f"w.lr_steep != {hi0!r}")
    hi1 = lab.value("w.lr_steep")
    assert hi1 == pytest.approx(lr_at(ticks, x), rel=0.05)
    assert hi1 > hi0 and lab.value("w.lr_min") == lo0

    x = drag(lab, "lr_min", -40)
    lab.wait_kernel(f"w.lr_min != {lo0!r}")
    lo1 = lab.value("w.lr_min")
    assert lo1 == pytest.approx(lr_at(ticks, x), rel=0.05) and lo1 < lo0
    assert lab.value("w.lr_steep") == hi1

    typed = float(f"{math.sqrt(lo1 * hi1):.3g}")
    before = handle(lab, "lr_min")["x"]
    field = page.locator(".widget-text", has_text="lr_min").locator("input")
    field.fill(str(typed))
    field.press("Enter")
    lab.wait_kernel(f"w.lr_min == {typed!r}")
    page.wait_for_function(
        f"() => {{ const h = ({JS_HANDLE})({COLORS['lr_min']!r}); return h && Math.abs(h.x - {before}) > 2; }}",
        timeout=10_000,
    )
    assert lr_at(ticks, handle(lab, "lr_min")["x"]) == pytest.approx(typed, rel=0.05)

    fit_and_check(lab, epochs=2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".widget-vbox").first.screenshot(path=str(ARTIFACTS / "widget-after-fit.png"))

    epochs = page.locator(".widget-inline-hbox", has_text="epochs").locator("input").first
    epochs.fill("500")
    epochs.press("Enter")
    lab.wait_kernel("w.epochs == 500")
    page.get_by_role("button", name="Fit one cycle").click()
    lab.wait_kernel("w.busy and learn.recorder.n_batches > 5", timeout=60)
    page.get_by_role("button", name="Stop").click()
    lab.wait_kernel("not w.busy", timeout=120)  # the event itself: a loaded machine takes longer, not more batches
    assert lab.value("learn.run.end_reason") == "stopped"
    assert lab.value("len(learn.recorder.values)") < 500
    assert not page_errors(lab), "the page logged errors:\n" + "\n".join(page_errors(lab))


@pytest.mark.app("notebook")
def test_notebook7_render_drag_fit(browser, server, request, shot_on_failure):
    lab = open_widget(browser, server, request, "nb7_widget")
    find_lr(lab)
    assert lab.page.locator("path.line").count() >= 2
    ticks = lab.page.evaluate(JS_TICKS)
    hi0, lo0 = lab.value("w.lr_steep"), lab.value("w.lr_min")
    x = drag(lab, "lr_steep", 30)
    lab.wait_kernel(f"w.lr_steep != {hi0!r}")
    assert lab.value("w.lr_steep") == pytest.approx(lr_at(ticks, x), rel=0.05)
    assert lab.value("w.lr_min") == lo0
    fit_and_check(lab, epochs=2)
    assert not page_errors(lab), "the page logged errors:\n" + "\n".join(page_errors(lab))


@pytest.mark.app("lab")
def test_lab_runs_from_the_same_start_sweep_and_row_click(browser, server, request, shot_on_failure):
    lab = open_widget(browser, server, request, "lab_runs")
    find_lr(lab)
    page = lab.page
    find_dots = """() => [...document.querySelectorAll('.bqplot')].filter(f => f.textContent.includes('lr_find:'))
        .map(f => f.querySelectorAll('g.object_grp > path.dot').length)[0]"""
    before = page.evaluate(find_dots)
    page.get_by_text("each fit from the same start").click()
    lab.wait_kernel("w.from_start")
    fit = page.get_by_role("button", name="Fit one cycle")
    for n in (1, 2):
        fit.click()
        lab.wait_kernel(f"len(w.runs) == {n} and not w.busy", timeout=180)
    rows = page.locator(".lrw-runs .lrw-run-row")
    rows.nth(1).wait_for(timeout=30_000)
    assert rows.count() == 2
    runs_chart = page.locator(".bqplot", has_text="runs: loss against epochs")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.bqplot')].filter(f => f.textContent.includes('runs: loss'))
             .some(f => [...f.querySelectorAll('path.line')].filter(p => (p.getAttribute('d') || '').length > 20)
             .length >= 4)""",
        timeout=30_000,
    )  # two runs: a validation line and a training line each
    assert runs_chart.count() == 1
    assert lab.value("w.runs[0].values == w.runs[1].values and w.runs[1].from_start"), "the same start, the same run"

    page.get_by_role("button", name="Sweep").click()
    lab.wait_kernel("len(w.runs) == 7 and not w.busy", timeout=300)
    assert "sweep done: 5 rates" in lab.value("w.status")
    page.wait_for_function("() => document.querySelectorAll('.lrw-runs .lrw-run-row').length === 7", timeout=30_000)
    page.wait_for_function(f"() => ({find_dots})() === {before + 7}", timeout=30_000)  # the map: a mark per run

    lab.kernel("w.lr_min, w.lr_steep = 1e-6, 2e-6")
    rows.first.click()
    lab.wait_kernel("w.lr_steep == w.runs[0].lr_steep and w.lr_min == w.runs[0].lr_min")
    rows.nth(6).click()
    lab.wait_kernel("w.lr_steep == w.runs[6].lr_steep")
    assert lab.value("w.lr_steep") == pytest.approx(10 * lab.value("w.runs[0].lr_steep"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".widget-vbox").first.screenshot(path=str(ARTIFACTS / "widget-runs.png"))
    assert not page_errors(lab), "the page logged errors:\n" + "\n".join(page_errors(lab))


# Voilà: the notebook runs as an app, no cells, no kernel to ask from the page; what the page shows is the check
VOILA_CELLS = [SETUP[0], SETUP[1].replace("epochs=2", "epochs=1")]
FIT_CODE = re.compile(r"learn\.fit_one_cycle\(1, lr_max=slice\(([^,]+), ([^)]+)\)\)")


@pytest.fixture
def voila(request, tmp_path):
    """Voilà serving a folder with the widget's notebook; on failure, a screenshot of the page before it stops."""
    require_voila()
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "voila_widget.ipynb", VOILA_CELLS)
    with voila_server(root) as s:
        yield s
        rep, lab = getattr(request.node, "rep_call", None), getattr(request.node, "lab", None)
        if lab is not None and rep is not None and rep.failed:
            print(f"\nscreenshot of the failing page: {lab.screenshot(request.node.name)}")
            print(f"voila's log:\n{s.log.read_text()[-3000:]}")


def wait_status(page, start: str, timeout: float) -> str:
    """Wait until the widget's status line begins with `start` (an error shown instead fails at once)."""
    js = """(start) => {
      const s = [...document.querySelectorAll('.widget-html-content span')].map(e => e.textContent)
          .find(t => t.startsWith(start) || t.startsWith('error:'));
      return s || null;
    }"""
    status = page.wait_for_function(js, arg=start, timeout=timeout * 1000, polling=200).json_value()
    assert status.startswith(start), status
    return status


def test_voila_find_and_fit(browser, voila, request):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    lab = watch_errors(Lab(page, voila))
    request.node.lab = lab
    outside: list[str] = []  # what the page asks of other hosts: refused, as where there is no network
    page.route(lambda url: not url.startswith(voila.base), lambda r: outside.append(r.request.url) or r.abort())
    page.goto(voila.url("voila_widget.ipynb"), timeout=120_000)
    page.get_by_role("button", name="Find LR").wait_for(timeout=120_000)
    wait_status(page, "ready", 30)

    page.get_by_role("button", name="Find LR").click()
    wait_status(page, "lr_find done", 120)
    for name in COLORS:
        handle(lab, name)  # each marker's handle drawn, a bqplot Scatter point
    page.wait_for_function(JS_CURVES, timeout=30_000)  # the smoothed and raw curves, drawn
    fields = {n: page.locator(".widget-text", has_text=n).locator("input") for n in COLORS}
    lo, hi = (float(fields[n].input_value()) for n in COLORS)
    assert 0 < lo <= hi < 10

    page.get_by_role("button", name="Fit one cycle").click()
    wait_status(page, "fit done", 120)
    code = page.locator(".widget-html-content pre", has_text="fit_one_cycle").inner_text()
    m = FIT_CODE.fullmatch(code.strip())
    assert m, code
    assert (float(m[1]), float(m[2])) == (pytest.approx(lo, rel=1e-5), pytest.approx(hi, rel=1e-5))
    rows = page.locator(".lrwidget-epochs tbody tr")
    rows.first.wait_for(timeout=30_000)
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()  # epoch, train_loss, valid_loss, accuracy, time
    assert cells[0] == "0" and float(cells[3]) > 0.5, cells
    page.wait_for_function(
        "() => [...document.querySelectorAll('.progress-bar')].some(b => b.style.width === '100%')", timeout=30_000
    )
    # bqplot's code came from Voilà, not a CDN; Voilà's lab template links Font Awesome's CSS from jsDelivr
    assert all("/@fortawesome/" in u for u in outside), outside
    errors = [e for e in page_errors(lab) if not any(e.endswith(f"({u})") for u in outside)]
    assert not errors, "the page logged errors:\n" + "\n".join(errors)
