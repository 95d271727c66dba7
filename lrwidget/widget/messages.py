"""What the widget says: the status line, the call that ran (`w.code`), and an error with its traceback on demand."""

from __future__ import annotations

import html

import ipywidgets as W

from .formats import error_text


class Messages:
    """The status line, the code line and the error box (hidden until an error)."""

    def __init__(self) -> None:
        self.status_html = W.HTML()
        self.status_html.add_class("lrw-status")
        self.code_html = W.HTML(layout=W.Layout(display="none"))
        self.code_html.add_class("lrw-code")
        self.error_html = W.HTML()
        self.traceback_html = W.HTML()
        self.traceback_box = W.Accordion(children=[self.traceback_html], titles=("traceback",), selected_index=None)
        self.error_box = W.VBox([self.error_html, self.traceback_box], layout=W.Layout(display="none"))

    def show_status(self, text: str) -> None:
        self.status_html.value = f"<span>{html.escape(text)}</span>"

    def show_code(self, code: str) -> None:
        # wraps only at spaces (after a comma), never inside a number: style.CSS's .lrw-code pre
        self.code_html.value = f"<pre>{html.escape(code)}</pre>"
        self.code_html.layout.display = "" if code else "none"

    def show_error(self, kind: str, e: BaseException, tb: str) -> str:
        """Show a run's error as the user's code raised it, with the traceback on demand; return its text."""
        msg = error_text(e)
        self.error_html.value = f"<div class='lrw-error'><b>error in {kind}</b>: {html.escape(msg)}</div>"
        self.traceback_html.value = f"<pre style='font-size:11px'>{html.escape(tb)}</pre>"
        self.traceback_box.selected_index = None
        self.error_box.layout.display = ""
        return msg

    def hide_error(self) -> None:
        self.error_box.layout.display = "none"
