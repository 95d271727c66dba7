"""The widget as people see it (issue #23), measured in the page: JupyterLab 4 (and Notebook 7 for the layout),
Debian's Chromium. One JupyterLab and one page serve the module: the quick-start model after Find LR, a 3-epoch Fit
from the start, the default Sweep and a 1-epoch fit at lr 3 that diverges (tests/widget_screenshots.py's `prepare`).
Every wait is for an event: the kernel's reply, an element, a text, the charts laid out.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from jupyter_browser import Lab, jupyter_server, launch_chromium, require_browser, write_notebook
from test_browser import drag, handle, page_errors, watch_errors
from widget_screenshots import CELLS, JS_LEFT, JS_THEME, prepare, settle

pytestmark = pytest.mark.slow  # a Jupyter server, a kernel and Chromium

# output widths, from the window's width and the file browser: the 900 px window with the file browser
# open (~470 px), without it (~720 px), a 1,080 px window (~900 px), 1,400 px (~1,220) and 1,920 px (~1,740); and
# the ends of the range, 450 and 1,920 px of output
LAYOUTS = {  # output area width: (window width, file browser open)
    "450": (880, True),
    "470": (900, True),
    "720": (900, False),
    "900": (1080, False),
    "1220": (1400, False),
    "1740": (1920, False),
    "1920": (2100, False),
}

JS_CUT = """() => {
  const root = document.querySelector('.lrw-root');
  const area = root.closest('.jp-OutputArea-output') || root.parentElement;
  const A = area.getBoundingClientRect();
  const name = e => (e.getAttribute && (e.getAttribute('class') || '').split(' ').slice(-2).join('.')) + ' "'
      + (e.textContent || '').trim().slice(0, 30) + '"';
  const bad = [];
  for (const e of root.querySelectorAll('*')) {
    if (e.closest('style')) continue;
    if (e.closest('.toolbar_div')) continue;  // bqplot's toolbar: icons, no text, shown (fading) under the mouse
    const cs = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height || cs.visibility === 'hidden' || cs.display === 'none' || cs.opacity === '0') continue;
    if (e.closest('svg') && e.tagName !== 'text') continue;  // drawings: their texts are checked
    if (r.left < A.left - 1 || r.right > A.right + 1)
      bad.push(`outside the output area: ${name(e)} ${r.left | 0}-${r.right | 0} of ${A.left | 0}-${A.right | 0}`);
    if (cs.textOverflow === 'ellipsis') bad.push(`text-overflow ellipsis: ${name(e)}`);
    const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const clipsX = ['hidden', 'clip'].includes(cs.overflowX), clipsY = ['hidden', 'clip'].includes(cs.overflowY);
    if (text && clipsX && e.scrollWidth > e.clientWidth + 1) bad.push(`text cut at the side: ${name(e)}`);
    if (text && clipsY && e.scrollHeight > e.clientHeight + 1) bad.push(`text cut below: ${name(e)}`);
  }
  for (const t of root.querySelectorAll('svg text')) {  // chart titles, axis labels, ticks, marker labels
    const r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
    if (!r.width || !t.textContent.trim() || getComputedStyle(t).display === 'none') continue;
    if (r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 || r.bottom > s.bottom + 1)
      bad.push(`chart text cut: "${t.textContent.trim()}"`);
  }
  return {bad, width: A.width};
}"""

# every text in the widget against what is behind it: WCAG contrast, colours composited with their opacity
JS_CONTRAST = """() => {
  const parse = c => { const m = (c || '').match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (t, b) => [0, 1, 2].map(i => t[i] * t[3] + b[i] * (1 - t[3])).concat([1]);
  const lum = c => { const f = v => (v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const opacity = e => {
    let o = 1;
    for (; e && e.nodeType === 1; e = e.parentElement) o *= +getComputedStyle(e).opacity;
    return o; };
  const behind = e => {  // the backgrounds from e up, composited
    const layers = [];
    for (; e && e.nodeType === 1; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((b, t) => over(t, b), [255, 255, 255, 1]);
  };
  const root = document.querySelector('.lrw-root');
  const out = [];
  const check = (el, color, text, bg) => {
    const fg = parse(color); if (!fg) return;
    fg[3] *= opacity(el);
    out.push({text: text.trim().slice(0, 40), ratio: +ratio(over(fg, bg), bg).toFixed(2), color,
              bg: bg.slice(0, 3).map(Math.round).join(',')});
  };
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const inactive = el => !!el.closest('button:disabled, select:disabled, input:disabled');  // exempt (WCAG 1.4.3)
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || el.closest('style, svg') || !shown(el) || inactive(el)) continue;
    check(el, getComputedStyle(el).color, n.textContent, behind(el));
  }
  for (const el of root.querySelectorAll('input, select')) {
    if (!shown(el) || inactive(el) || !el.value) continue;
    check(el, getComputedStyle(el).color, el.value, behind(el));
  }
  for (const t of root.querySelectorAll('svg text')) {
    if (!t.textContent.trim() || !shown(t) || getComputedStyle(t).display === 'none') continue;
    const fig = t.ownerSVGElement.closest('.bqplot');
    let bg = behind(fig);
    const plot = fig.querySelector('rect.plotarea_background');
    if (plot) {
      const c = parse(getComputedStyle(plot).fill), r = plot.getBoundingClientRect(), q = t.getBoundingClientRect();
      const x = q.left + q.width / 2, y = q.top + q.height / 2;
      if (c && x > r.left && x < r.right && y > r.top && y < r.bottom) {
        c[3] *= +getComputedStyle(plot).fillOpacity; bg = over(c, bg);
      }
    }
    check(t, getComputedStyle(t).fill, t.textContent, bg);
  }
  return out;
}"""

JS_STATUS = "() => (document.querySelector('.lrw-root .lrw-status') || {}).textContent || ''"


def figure_js(title: str) -> str:
    return f"[...document.querySelectorAll('.lrw-root .bqplot')].find(f => f.textContent.includes({title!r}))"


# every chart text inside its chart: bqplot may draw a mark's labels with a scale's old range for a moment, until the
# scale's new range reaches the page (each widget has its own messages)
JS_TEXTS_IN = """() => [...document.querySelectorAll('.lrw-root svg text')].every(t => {
  const r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
  return !r.width || (r.left >= s.left - 1 && r.right <= s.right + 1); })"""


def wait_then_check(page, js: str, timeout: int, **options) -> None:
    """Wait until `js` is true on the page; on a timeout go on, and leave it to the assertions after to say what is
    missing (they name it, where a timeout would not)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(js, timeout=timeout, **options)
    except PlaywrightTimeout:
        pass


def lay_out(lab: Lab, layout: str, height: int = 3000) -> None:
    """The window and file browser of `layout`; tall, so that every chart is in view and laid out, its texts drawn where
    they settle (a text that never comes inside is left to the checks to report)."""
    width, sidebar = LAYOUTS[layout]
    settle(lab.page, width, height, sidebar, output=int(layout))
    wait_then_check(lab.page, JS_TEXTS_IN, 10_000, polling=100)


def to_top(lab: Lab) -> None:
    """The notebook scrolled to its top, as it opens."""
    lab.page.evaluate(
        "() => document.querySelectorAll('.jp-WindowedPanel-outer, .jp-NotebookPanel-notebook, #main-panel')"
        ".forEach(e => e.scrollTop = 0)"
    )


def runs_drawn(lab: Lab) -> None:
    """Wait until the page shows a row for each of the kernel's runs: the browser draws them after the kernel."""
    n = lab.value("len(w.runs)")
    lab.page.wait_for_function(f"() => document.querySelectorAll('.lrw-run-row').length >= {n}", timeout=60_000)


@pytest.fixture(scope="module")
def lab(request):
    require_browser()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        root = Path(tmp) / "root"
        root.mkdir()
        write_notebook(root / "widget.ipynb", CELLS)
        with jupyter_server(root) as server:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            lab = watch_errors(Lab(page, server))
            lab.open("widget.ipynb")
            page.evaluate(JS_LEFT, False)
            lab.run_all()
            page.wait_for_selector("text=Find LR", timeout=120_000)
            lab.wait_kernel("'w' in globals()", timeout=120)
            prepare(lab)
            yield lab
            browser.close()


@pytest.fixture(autouse=True)
def shot_on_failure(request, lab):
    """On failure, a screenshot of the page (test-artifacts/) and its path; the page back to 1400x1000, light."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\nscreenshot of the failing page: {lab.screenshot(request.node.name)}")
    if lab.page.evaluate("() => document.body.dataset.jpThemeLight") == "false":
        lab.page.evaluate(JS_THEME, "JupyterLab Light")
        lab.page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000)
    lay_out(lab, "1220", 1000)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nothing_is_cut_off_or_outside_the_output_from_450_to_1920_px(lab, layout):
    """Each element's box inside the output area; no ellipsis; no text cut by its box; every chart text (titles, axis
    labels, ticks, the markers' labels) inside its chart."""
    lay_out(lab, layout)
    got = lab.page.evaluate(JS_CUT)
    assert abs(got["width"] - int(layout)) < 30, f"the output is {got['width']} px wide"
    assert not got["bad"], "\n".join(got["bad"])
    columns = lab.page.evaluate(
        "() => [...document.querySelectorAll('.lrw-root .lrw-col')].map(c => Math.round(c.getBoundingClientRect().top))"
    )
    side_by_side = {"450": 1, "470": 1, "720": 1, "900": 1, "1220": 2, "1740": 3, "1920": 3}[layout]
    assert len(set(columns)) == 3 - side_by_side + 1, f"{side_by_side} column(s) side by side: tops {columns}"


def test_the_live_loss_chart_is_in_view_during_a_fit_at_1400x1000_with_the_planned_schedule(lab):
    page = lab.page
    lay_out(lab, "1220", 1000)
    to_top(lab)
    lab.kernel("w.fit(400)")
    try:
        lab.wait_kernel("w.busy and len(learn.recorder.values) >= 12", timeout=120)
        loss, sched = figure_js("loss"), figure_js("schedule")
        page.wait_for_function(
            f"() => [...{loss}.querySelectorAll('path.line')].some(p => (p.getAttribute('d') || '').length > 50)",
            timeout=30_000,
        )
        box = page.evaluate(f"() => {{ const r = {loss}.getBoundingClientRect(); return [r.top, r.bottom]; }}")
        assert 0 <= box[0] and box[1] <= 1000, f"the live loss chart spans {box} of a 1,000 px window"
        # the planned cycle dashed to the plot's right end, the batches done solid over its first part
        ends = page.evaluate(
            f"""() => {{ const f = {sched}, plot = f.querySelector('rect.plotarea_background').getBoundingClientRect();
              const lines = [...f.querySelectorAll('path.line')].filter(p => (p.getAttribute('d') || '').length > 20);
              const dashed = p => getComputedStyle(p).strokeDasharray !== 'none';
              return {{plot: plot.right, planned: lines.filter(dashed).map(p => p.getBoundingClientRect().right),
                       done: lines.filter(p => !dashed(p)).map(p => p.getBoundingClientRect().right)}}; }}"""
        )
        assert ends["planned"] and all(abs(r - ends["plot"]) < 4 for r in ends["planned"]), ends
        assert ends["done"] and all(r < ends["plot"] - 20 for r in ends["done"]), ends
        # the epoch table: scrolled up, it stays there as rows are added (it jumped back to the newest row)
        box = "document.querySelector('.lrw-root .lrwidget-epochs')"
        # the browser draws the rows some time after the kernel has them: scroll once they overflow the box
        page.wait_for_function(f"() => {box}.scrollHeight - {box}.clientHeight > 80", timeout=120_000)
        page.evaluate(f"() => {{ {box}.scrollTop = -60; }}")
        before = page.evaluate(f"() => [{box}.scrollTop, {box}.querySelectorAll('tbody tr').length]")
        assert before[0] < -20, f"the table scrolls ({before})"
        page.wait_for_function(f"() => {box}.querySelectorAll('tbody tr').length >= {before[1] + 2}", timeout=120_000)
        assert page.evaluate(f"() => {box}.scrollTop") < -20, "the table stayed where it was scrolled"
    finally:
        lab.kernel("w.stop(); w.wait()", timeout=120_000)


def test_the_runs_chart_reads_whatever_the_runs_and_names_one_best(lab):
    page = lab.page
    lay_out(lab, "1220")
    runs_drawn(lab)  # the previous test's stopped fit among them
    runs = lab.value("[(r.lr_steep, r.valid_loss, r.diverged) for r in w.runs]")
    diverged = [i for i, r in enumerate(runs) if r[2]]
    assert diverged == [i for i, r in enumerate(runs) if r[0] == 3.0], runs  # the 1-epoch fit at lr 3
    kept = [v for _, v, d in runs if not d and v == v]
    chart = figure_js("runs: loss")
    ticks = page.evaluate(
        f"() => [...{chart}.querySelectorAll('g.axis')].map(a => [...a.querySelectorAll('g.tick text')]"
        ".map(t => t.textContent.replace('\\u2212', '-')))"
    )
    y = [float(t) for t in ticks[1]]
    assert max(kept) <= max(y) * 1.3 and max(y) < runs[diverged[0]][1], (
        f"the loss axis {y} fits the runs that did not diverge"
    )
    assert all(re.fullmatch(r"\d+", t) for t in ticks[0]), f"whole epochs: {ticks[0]}"
    arrow = page.evaluate(
        f"""() => {{ const f = {chart}, plot = f.querySelector('rect.plotarea_background').getBoundingClientRect();
          const t = [...f.querySelectorAll('text')].find(t => t.textContent.trim() === '#{diverged[0]}');
          return t ? [t.getBoundingClientRect().top - plot.top, plot.height] : null; }}"""
    )
    assert arrow is not None and arrow[0] < 0.2 * arrow[1], f"an arrow numbered #{diverged[0]} at the top: {arrow}"
    # the 1-epoch runs' validation points: whole, inside the plot
    dots = page.evaluate(
        f"""() => {{ const f = {chart}, p = f.querySelector('rect.plotarea_background').getBoundingClientRect();
          return [...f.querySelectorAll('path.dot')].map(d => d.getBoundingClientRect())
            .filter(r => r.width > 0)
            .map(r => [r.left - p.left, p.right - r.right, r.top - p.top, p.bottom - r.bottom]); }}"""
    )
    assert len(dots) >= len(runs) - 1 and all(min(left, right, bottom) >= -1 for left, right, _, bottom in dots), dots
    table = page.evaluate("() => document.querySelector('.lrw-root .lrw-runs-table').innerText")
    assert "diverged" in table and "began at" in table and "start 1" in table and f"#{diverged[0]}" in table
    best = lab.value("__import__('lrwidget.widget.runs', fromlist=['ranked']).ranked(w.runs)[1]")
    title = page.evaluate("() => document.querySelector('.lrw-root .lrw-runs-col').innerText")
    assert f"best of the 1-epoch runs from start 1: #{best} " in title
    stars = page.evaluate(
        "() => [...document.querySelectorAll('.lrw-root .lrw-run')]"
        ".map((r, i) => r.innerText.includes('best') ? i : -1)"
        ".filter(i => i >= 0)"
    )
    assert stars == [best]


def test_axis_ticks_never_repeat_and_count_in_whole_batches_and_epochs(lab):
    lay_out(lab, "1220")
    axes = lab.page.evaluate(
        """() => [...document.querySelectorAll('.lrw-root .bqplot g.axis')].map(a => ({
             label: (a.querySelector('.axislabel') || {}).textContent || '',
             ticks: [...a.querySelectorAll('g.tick text')].map(t => t.textContent.replace('\\u2212', '-'))}))"""
    )
    assert len(axes) >= 9, axes
    for a in axes:
        assert len(a["ticks"]) >= 2 and len(set(a["ticks"])) == len(a["ticks"]), a
        if a["label"] in ("batches", "epochs"):
            assert all(re.fullmatch(r"\d+", t) for t in a["ticks"]), a


def test_the_status_and_the_labels_say_the_markers_as_they_are_after_a_drag(lab):
    page = lab.page
    lay_out(lab, "1220", 1000)
    page.locator(".lrw-root .bqplot").first.scroll_into_view_if_needed()
    lo0, hi0 = lab.value("(w.lr_min, w.lr_steep)")
    drag(lab, "lr_steep", 40)
    lab.wait_kernel(f"w.lr_steep != {hi0!r}")
    hi = lab.value("w.lr_steep")
    page.wait_for_function(f"() => ({JS_STATUS})().includes('lr_steep={hi:.4g}')", timeout=30_000)
    status = page.evaluate(JS_STATUS)
    assert status.startswith(f"markers at lr_min={lo0:.4g}, lr_steep={hi:.4g}"), status
    assert f"{hi0:.4g}" not in status, "nothing left of the values before the drag"
    labels = page.evaluate("() => [...document.querySelectorAll('.lrw-root svg text')].map(t => t.textContent)")
    assert f"lr_steep {hi:.3g}" in labels, "the marker's label shows its value"
    h = handle(lab, "lr_min")  # hovering a handle shows no tooltip (it showed where a drag began, over the other)
    page.mouse.move(h["x"], h["y"])
    h = handle(lab, "lr_steep")
    page.mouse.move(h["x"], h["y"])
    tips = page.evaluate(
        "() => [...document.querySelectorAll('.bqplot_tooltip_div, .bqplot_tooltip')].filter(t => "
        "getComputedStyle(t).opacity !== '0' && getComputedStyle(t).visibility !== 'hidden' && "
        "t.getBoundingClientRect().width > 0 && t.textContent.trim()).map(t => t.textContent)"
    )
    assert not tips, tips


def test_marker_labels_stay_inside_the_chart_at_both_ends_and_beyond_it(lab):
    page = lab.page
    lay_out(lab, "470", 1000)
    page.locator(".lrw-root .bqplot").first.scroll_into_view_if_needed()
    lo, hi = lab.value("w.chart_view.lr_range")
    labels = """() => { const f = document.querySelector('.lrw-root .bqplot');
      const s = f.querySelector('svg').getBoundingClientRect();
      return [...f.querySelectorAll('text')].filter(t => /^(← )?lr_(min|steep) /.test(t.textContent)
          && +getComputedStyle(t).fontWeight >= 700)  /* the markers' labels: bold; the suggestions' are not */
        .map(t => { const r = t.getBoundingClientRect();
                    return [t.textContent, r.left - s.left, s.right - r.right]; }); }"""
    for lo_, hi_, arrow in ((lo * 1.01, hi / 1.01, ""), (lo * 1.01, 100.0, "→")):
        lab.kernel(f"w.lr_min, w.lr_steep = {lo_!r}, {hi_!r}")
        want = f"lr_steep {hi_:.3g}{' ' + arrow if arrow else ''}"
        try:
            page.wait_for_function(f"() => ({labels})().some(l => l[0] === {want!r})", timeout=30_000)
        finally:
            got = page.evaluate(labels)
        assert len(got) == 2 and all(min(left, right) >= 0 for _, left, right in got), got
    status = page.evaluate(JS_STATUS)
    assert f"lr_steep is beyond the chart's right end ({hi:.3g})" in status, status
    lab.kernel("w.use_run(0)")


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_every_text_reads_at_4_5_to_1_in_both_themes(lab, theme):
    page = lab.page
    lay_out(lab, "1220")
    light = "true" if theme.endswith("Light") else "false"
    page.evaluate(JS_THEME, theme)
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
    page.wait_for_function(  # the widget's own colours follow the theme
        "(light) => { const c = getComputedStyle(document.querySelector('.lrw-root'))"
        ".getPropertyValue('--lrw-lr_steep')"
        ".trim(); return light ? c === '#c4161c' : c === '#ff7b72'; }",
        arg=light == "true",
        timeout=30_000,
    )
    texts = page.evaluate(JS_CONTRAST)
    assert len(texts) > 60, f"only {len(texts)} texts measured"
    low = [t for t in texts if t["ratio"] < 4.5]
    assert not low, "\n".join(f"{t['ratio']}:1 {t['text']!r} ({t['color']} on {t['bg']})" for t in low)
    for name in ("Find LR", "Fit one cycle"):
        assert any(t["text"] == name and t["ratio"] >= 4.5 for t in texts), f"{name}: {texts}"


def test_the_code_line_breaks_between_values_never_inside_a_number(lab):
    page = lab.page
    lay_out(lab, "470", 1000)
    lab.kernel("w.sweep(lrs=[0.0015848931924611143, 0.005011872336272725, 0.015848931924611114], epochs=1); w.wait()")
    code = lab.value("w.code")
    page.wait_for_function(
        "(code) => (document.querySelector('.lrw-root .lrw-code pre') || {}).textContent === code", arg=code,
        timeout=60_000,
    )  # fmt: skip
    broken = page.evaluate(
        """() => { const pre = document.querySelector('.lrw-root .lrw-code pre'), text = pre.firstChild, out = [];
          for (const m of text.textContent.matchAll(/[0-9][0-9.e+-]*/g)) {
            const r = document.createRange(); r.setStart(text, m.index); r.setEnd(text, m.index + m[0].length);
            const lines = new Set([...r.getClientRects()].map(q => Math.round(q.top)));
            if (lines.size > 1) out.push(m[0]);
          }
          return out; }"""
    )
    assert not broken, f"numbers broken across lines: {broken}"


JS_SENSITIVITY = """() => { const f = [...document.querySelectorAll('.lrw-root .bqplot')]
    .find(f => f.textContent.includes('outcome against the rate'));
  if (!f) return null;
  const plot = f.querySelector('rect.plotarea_background').getBoundingClientRect();
  const box = r => [r.left - plot.left, plot.right - r.right, r.top - plot.top, plot.bottom - r.bottom];
  const labels = [...f.querySelectorAll('text')].filter(t => /^(lr_min|lr_steep|valley|slide|best #\\d+|search best) /
    .test(t.textContent.trim())).map(t => [t.textContent.trim(), t.getBoundingClientRect()]);
  const dots = [...f.querySelectorAll('path.dot')].map(d => d.getBoundingClientRect()).filter(r => r.width > 0);
  const arrow = [...f.querySelectorAll('text')].find(t => /^#\\d+$/.test(t.textContent.trim()));
  const heading = f.parentElement.querySelector('.widget-html').innerText;
  return {labels: labels.map(([t, r]) => [t, ...box(r), r.top, r.bottom]), dots: dots.map(box),
          arrow: arrow ? [arrow.textContent.trim(), arrow.getBoundingClientRect().top - plot.top, plot.height] : null,
          heading}; }"""


@pytest.mark.parametrize("layout", ["470", "1740"])
def test_the_chart_of_how_much_the_rate_matters_reads_whole_at_470_and_1740_px(lab, layout):
    """The sweep's 1-epoch runs by rate (one diverged, at lr 3): every point inside the plot, the rules' labels inside
    it and apart, the diverged run's arrow at the top, the heading naming the group and its best."""
    lay_out(lab, layout)
    runs = lab.value("[(r.lr_steep, r.diverged) for r in w.runs if r.epochs == 1 and not r.search]")
    wait_then_check(  # the previous test's sweep added three: drawn after the kernel has them
        lab.page,
        f"() => {{ const g = ({JS_SENSITIVITY})(); return g !== null && g.dots.length === {len(runs)}; }}",
        60_000,
    )
    got = lab.page.evaluate(JS_SENSITIVITY)
    assert got is not None, "the chart is shown once a group has two runs"
    assert len(got["dots"]) == len(runs), f"a point per run, the diverged one's an arrow: {got['dots']}"
    assert all(min(d) >= -1 for d in got["dots"]), f"points cut at the plot's edge: {got['dots']}"
    names = [t for t, *_ in got["labels"]]
    assert {"lr_min", "lr_steep"} <= {n.split()[0] for n in names} and any(n.startswith("best #") for n in names)
    assert all(min(left, right, top, bottom) >= -1 for _, left, right, top, bottom, _, _ in got["labels"]), got
    rows = sorted((top, bottom) for *_, top, bottom in got["labels"])
    assert all(a[1] <= b[0] + 1 for a, b in zip(rows, rows[1:])), f"labels on top of each other: {got['labels']}"
    assert got["arrow"] is not None and got["arrow"][1] < 0.2 * got["arrow"][2], got["arrow"]
    assert got["heading"].startswith(f"how much the rate matters: the 1-epoch runs from start 1: {len(runs)} runs"), got


def test_find_with_repeats_draws_its_band_behind_the_curve(lab):
    page = lab.page
    lay_out(lab, "1220", 1000)
    page.locator(".lrw-root .bqplot").first.scroll_into_view_if_needed()
    lab.kernel("w.find(repeats=3); w.wait()", timeout=300_000)
    band = """() => { const f = document.querySelector('.lrw-root .bqplot');
      const fills = [...f.querySelectorAll('path.area')].filter(p => (p.getAttribute('d') || '').length > 50);
      const line = [...f.querySelectorAll('path.line')].find(p => getComputedStyle(p).strokeWidth === '2.5px');
      if (!fills.length || !line) return null;
      const order = fills[0].compareDocumentPosition(line) & Node.DOCUMENT_POSITION_FOLLOWING;
      const r = fills[0].getBoundingClientRect();
      const cs = getComputedStyle(fills[0]);
      return {behind: !!order, height: r.height, fill: cs.fill, opacity: +cs.fillOpacity * +cs.opacity}; }"""
    page.wait_for_function(f"() => ({band})() !== null", timeout=30_000)
    got = page.evaluate(band)
    assert got["behind"] and got["height"] > 2 and 0 < got["opacity"] < 1 and got["fill"] != "none", got
    status = page.evaluate(JS_STATUS)
    assert status.startswith("lr_find done (") and lab.value("w.result.repeats") == 3, status


def test_a_search_names_its_probe_as_it_runs_and_its_runs_read_whole(lab):
    page = lab.page
    lay_out(lab, "1220", 1000)
    label = "() => (document.querySelector('.lrw-root .lrw-progress-label') || {}).textContent || ''"
    lab.kernel("w.search(budget=1.5)")
    try:
        page.wait_for_function(f"() => /^search · probe \\d+ of \\d+ \\((sweep|long)\\) · fit · /.test(({label})())",
                               timeout=120_000, polling=50)  # fmt: skip
    finally:
        lab.kernel("w.wait()", timeout=300_000)
    page.wait_for_function(f"() => ({JS_STATUS})().startsWith('search done: best lr ')", timeout=30_000)
    n = lab.value("len(w.searches[-1].lrs)")
    page.wait_for_function(f"() => document.querySelectorAll('.lrw-run-row').length >= {7 + n}", timeout=30_000)
    for layout in ("470", "1740"):
        lay_out(lab, layout)
        got = page.evaluate(JS_CUT)
        assert not got["bad"], f"{layout} px:\n" + "\n".join(got["bad"])
    table = page.evaluate("() => document.querySelector('.lrw-root .lrw-runs-table').innerText")
    assert "search" in table and f"1: {n} of {n} (long)" in table and " steps" in table
    # the largest group is still the sweeps' 1-epoch runs: the menu offers the search's probes
    options = lab.value("w.history.sensitivity.menu.options")
    sweep = lab.value("sum(p == 'sweep' for p in w.searches[-1].phases)")
    probes = next(o for o in options if o.endswith(f"-step probes from start 1 ({sweep})"))
    lay_out(lab, "1220")
    page.select_option(".lrw-root .lrw-runs-col select", label=probes)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.lrw-root svg text')].some(t => t.textContent.startsWith('search best'))",
        timeout=30_000,
    )
    heading = lab.value("w.history.sensitivity.heading.value")
    assert "-step probes from start 1" in heading and "search best" in heading, heading


def test_the_page_logged_no_errors(lab):
    errors = page_errors(lab)
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.mark.app("notebook")
def test_notebook7_lays_the_widget_out_without_cutting_anything(lab, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "nb7.ipynb", CELLS)
    with jupyter_server(root, "notebook") as server:
        page = lab.page.context.browser.new_page(viewport={"width": 900, "height": 3000})
        try:
            nb = watch_errors(Lab(page, server))
            nb.open("nb7.ipynb")
            nb.run_all()
            page.wait_for_selector("text=Find LR", timeout=120_000)
            nb.wait_kernel("'w' in globals()", timeout=120)
            settle(page, 900, 3000)
            # the empty chart: its "loss" label clear of its ticks (it sat over "0.500")
            overlaps = page.evaluate(
                """() => { const f = document.querySelector('.lrw-root .bqplot');
                  const a = [...f.querySelectorAll('g.axis')].find(g => (g.querySelector('.axislabel') || {})
                      .textContent === 'loss');
                  const label = a.querySelector('.axislabel').getBoundingClientRect();
                  return [...a.querySelectorAll('g.tick text')].map(t => t.getBoundingClientRect())
                    .filter(r => r.right > label.left && r.left < label.right && r.bottom > label.top
                                 && r.top < label.bottom).length; }"""
            )
            assert overlaps == 0, "the y axis label covers a tick label"
            prepare(nb)
            for width in (900, 1920):
                settle(page, width, 3000)
                got = page.evaluate(JS_CUT)
                assert not got["bad"], f"{width} px window:\n" + "\n".join(got["bad"])
            assert not page_errors(nb), "the page logged errors:\n" + "\n".join(page_errors(nb))
        finally:
            page.close()
