"""The widget's look: colours per JupyterLab theme (CSS variables), and the CSS that lays the parts out.

Text is drawn in colours of >= 4.5:1 against the theme's background: the theme's own text colour
(`--jp-content-font-color1`), or a colour of the light or dark set below, chosen by JupyterLab's
`data-jp-theme-light` (VS Code and Colab mark their dark themes on `body` and `html`). Charts take these colours as
`var(--lrw-..., fallback)`, which bqplot sets as CSS styles; a figure outside a widget gets the fallbacks.

Lines, points and swatches (not text) need >= 3:1: PALETTE's twenty run colours and RAMP's outcome colours have a
luminance of 0.16 to 0.27, which is >= 3.3:1 against white and against JupyterLab's dark #111, so one palette serves
both themes.
"""

from __future__ import annotations

import ipywidgets as W

# (light, dark) per role; the CSS variable is --lrw-<role>
COLORS = {
    "lr_min": ("#a14a00", "#ffa657"),
    "lr_steep": ("#c4161c", "#ff7b72"),
    "valley": ("#1a7f37", "#56d364"),
    "slide": ("#8250df", "#d2a8ff"),
    "curve": ("#1f6fb4", "#58a6ff"),  # the smoothed lr_find curve, the training loss
    "raw": ("#7fa7d1", "#3f6fa5"),  # the raw lr_find loss: fainter than the curve, >= 2.5:1 on both backgrounds
    "valid": ("#a14a00", "#ffa657"),  # the validation loss
    "lr": ("#1a7f37", "#56d364"),  # the schedule's learning rate
    "mom": ("#8250df", "#d2a8ff"),  # the schedule's momentum
    "earlier": ("#767676", "#9a9a9a"),  # earlier lr_find curves
    "error": ("#b00020", "#ff8a80"),
    "good": ("#1a7f37", "#56d364"),  # the best run's mark
    "point": ("#555555", "#bbbbbb"),  # a suggestion without a colour of its own
}
# button backgrounds under white text (>= 5.3:1 in both themes: the button is its own background)
BUTTONS = {"find": "#0d6e80", "fit": "#1f7a38", "stop": "#c62828"}

PALETTE = (
    "#2374c6 #b05c09 #218331 #da2c3a #9458bf #a6613f #cd2b97 #727272 #767611 #137e88 "
    "#7387d8 #a58a1b #379d67 #d07257 #b574be #a7864f #d06c91 #8c8c8c #759726 #3592cd"
).split()
RAMP = ((0x21, 0x83, 0x31), (0xA5, 0x8A, 0x1B), (0xDA, 0x2C, 0x3A))  # best (green), amber, worst (red)

NARROW_RUNS = 640  # px: a runs panel narrower than this shows each run as a card, not a table row


def var(role: str) -> str:
    """The CSS colour of `role`, with the light theme's value as the fallback."""
    return f"var(--lrw-{role}, {COLORS[role][0]})"


def _vars(i: int) -> str:
    return "".join(f"--lrw-{role}:{pair[i]};" for role, pair in COLORS.items())


DARK = "[data-jp-theme-light='false'] .lrw-root, body.vscode-dark .lrw-root, html[theme='dark'] .lrw-root"

CSS = f"""
.lrw-root {{
  {_vars(0)}
  --lrw-fg: var(--jp-content-font-color1, rgba(0, 0, 0, 0.87));
  --lrw-bg: var(--jp-layout-color0, #fff);
  --bq-content-font-color: var(--lrw-fg);
  --bq-content-scatter-font-color: var(--lrw-fg);
  --bq-mainheading-fill: var(--lrw-fg);
  --bq-axislabel-fill: var(--lrw-fg);
  --bq-axis-tick-text-fill: var(--lrw-fg);
  color: var(--lrw-fg);
  min-width: 0;
}}
{DARK} {{ {_vars(1)} }}
.lrw-root .lrw-top {{ display: flex; flex-flow: row wrap; gap: 4px 24px; align-items: flex-start; }}
.lrw-root .lrw-top > .lrw-col {{ flex: 1 1 440px; min-width: 0; max-width: 100%; }}
.lrw-root .lrw-runs-col {{ container: lrw-runs / inline-size; }}
.lrw-root .bqplot {{ margin: 2px 0; }}
.lrw-root .lrw-row {{ flex-flow: row wrap; align-items: center; row-gap: 2px; }}
.lrw-root .lrw-row > * {{ flex: 0 0 auto; }}
.lrw-root .widget-button {{
  width: auto; height: auto; min-height: var(--jp-widgets-inline-height, 28px);
  white-space: normal; text-overflow: clip; overflow-wrap: break-word; max-width: 100%;
}}
.lrw-root .widget-label, .lrw-root .widget-label-basic {{ text-overflow: clip; white-space: normal; }}
.lrw-root .widget-inline-hbox > .widget-label {{ white-space: nowrap; overflow: visible; }}
.lrw-root .lrw-row > .widget-label {{ flex: 1 1 200px; min-width: 0; height: auto; line-height: 1.5; }}
.lrw-root .widget-dropdown select {{ text-overflow: clip; }}
.lrw-root .widget-button.lrw-find {{ background-color: {BUTTONS["find"]}; color: #fff; }}
.lrw-root .widget-button.lrw-fit {{ background-color: {BUTTONS["fit"]}; color: #fff; }}
.lrw-root .widget-button.lrw-stop {{ background-color: {BUTTONS["stop"]}; color: #fff; }}
.lrw-root .widget-html, .lrw-root .widget-html-content {{ min-width: 0; max-width: 100%; }}
.lrw-root .widget-html-content {{ white-space: normal; overflow-wrap: break-word; }}
.lrw-root .lrw-status {{ font-family: var(--jp-code-font-family, monospace); }}
.lrw-root .lrw-code pre {{ white-space: pre-wrap; word-break: normal; overflow-wrap: normal; margin: 2px 0; }}
.lrw-root .lrw-error {{ color: var(--lrw-error); }}
.lrw-root .lrw-key {{ font-size: 12px; }}
.lrw-root .lrwidget-epochs {{ max-width: 100%; overflow: auto; display: flex; flex-direction: column-reverse; }}
.lrw-root .lrw-runs-table {{ max-width: 100%; }}
.lrw-root .lrw-run, .lrw-root .lrw-run-head {{ display: contents; }}
.lrw-root .lrw-k {{ display: none; }}
.lrw-root .lrw-cell {{ padding: 1px 6px; font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  white-space: nowrap; }}
.lrw-root .lrw-swatch {{ display: inline-block; width: 12px; height: 12px; vertical-align: middle; }}
.lrw-root .lrw-best {{ color: var(--lrw-good); font-weight: bold; }}
@container lrw-runs (max-width: {NARROW_RUNS}px) {{
  .lrw-root .lrw-runs-table {{ display: flex !important; flex-direction: column; }}
  .lrw-root .lrw-run-head {{ display: none; }}
  .lrw-root .lrw-run {{ display: flex; flex: 0 0 auto; flex-flow: row wrap; align-items: center; padding: 3px 0;
    border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }}
  .lrw-root .lrw-k {{ display: inline; opacity: 1; }}
  .lrw-root .lrw-cell:empty, .lrw-root .lrw-cell-empty {{ display: none; }}
}}
"""


def stylesheet() -> W.HTML:
    """The widget's CSS, as a widget of its own: it applies while the widget is shown."""
    return W.HTML(f"<style>{CSS}</style>", layout=W.Layout(display="none"))


def mix(t: float) -> str:
    """The outcome colour at t: 0 best (green) through amber to 1 worst (red)."""
    a, f = (0, t * 2) if t <= 0.5 else (1, t * 2 - 1)
    c = [round(x + (y - x) * f) for x, y in zip(RAMP[a], RAMP[a + 1])]
    return "#{:02x}{:02x}{:02x}".format(*c)
