"""Real-browser test support: a Jupyter server on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LRWIDGET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def require_browser() -> None:
    """Skip where Chromium or Playwright is missing, except under CI=true, where that is a failure."""
    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("Playwright is not installed (pip install -e '.[test]')")
    missing(problems)


def require_voila() -> None:
    """Skip where Voilà is not installed, except under CI=true (it is in the test extra), where that is a failure."""
    import importlib.util

    missing([] if importlib.util.find_spec("voila") else ["Voilà is not installed (pip install -e '.[test]')"])


def missing(problems: list[str]) -> None:
    """Skip for what is missing, or fail under CI=true."""
    if problems:
        msg = "; ".join(problems)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests cannot run under CI: {msg}")
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_folders(home: Path) -> dict[str, str]:
    """The environment of a server with Jupyter's config, runtime and data folders of its own under `home`."""
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, name: str, timeout: float) -> None:
    """Return once `url` answers 200; raise, with the end of the server's log, if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{name} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


class JupyterServer:
    """A JupyterLab (`app='lab'`) or Notebook 7 (`app='notebook'`) server with its own config and runtime folders."""

    def __init__(self, root: Path, app: str = "lab"):
        self.root, self.app = root, app
        self.port, self.token = free_port(), "lrwidget-test-token"
        self.base = f"http://127.0.0.1:{self.port}"
        home = root.parent / f".jupyter-{app}"
        self.env = {**own_folders(home), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
        self.log = home / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> JupyterServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        labconfig = Path(self.env["JUPYTER_CONFIG_DIR"]) / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        # no "get notified about Jupyter news?" toast over the page
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        kind = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if self.app == "lab" else "notebook",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--{kind}.expose_app_in_browser=True",
            "--ServerApp.disable_check_xsrf=True",
            "--allow-root",
            "--LabServerApp.workspaces_dir=" + self.env["JUPYTERLAB_WORKSPACES_DIR"],
        ]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until_up(self.proc, f"{self.base}/api/status?token={self.token}", self.log, f"jupyter {self.app}", timeout)
        return self

    def stop(self) -> None:
        """Stop the server and every kernel it started (the whole process group)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"{self.base}/api/shutdown?token={self.token}", method="POST"), timeout=5
            ).close()
            self.proc.wait(timeout=15)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def url(self, notebook: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base}/{path}/{notebook}?token={self.token}"


@contextmanager
def jupyter_server(root: Path, app: str = "lab") -> Iterator[JupyterServer]:
    server = JupyterServer(root, app)
    try:
        yield server.start()
    finally:
        server.stop()


class VoilaServer:
    """Voilà serving the notebooks of `root` on 127.0.0.1, no token, tracebacks shown, with its own Jupyter folders."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        home = root.parent / ".voila"
        self.env = own_folders(home)
        self.log = home / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> VoilaServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "voila",
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={self.port}",
            "--Voila.port_retries=0",
            "--show_tracebacks=True",
            f"--Voila.root_dir={self.root}",
            # Notebook 7's JupyterLab plugin, installed with notebook, fails to load in Voilà and logs an error
            # (voila-dashboards/voila#1514), and so does jupytext's (installed with mkdocs-jupyter, the docs extra:
            # it asks Voilà for @jupyterlab/docmanager, which Voilà does not share): a Voilà deployment leaves them out
            "--VoilaConfiguration.extension_denylist=['@jupyter-notebook/lab-extension', 'jupyterlab-jupytext']",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_up(self.proc, f"{self.base}/", self.log, "voila", timeout)  # the tree page: it starts no kernel
        return self

    def stop(self) -> None:
        """Stop Voilà; on SIGTERM it shuts its kernels down (they run in sessions of their own)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def url(self, notebook: str) -> str:
        return f"{self.base}/voila/render/{notebook}"


@contextmanager
def voila_server(root: Path) -> Iterator[VoilaServer]:
    server = VoilaServer(root)
    try:
        yield server.start()
    finally:
        server.stop()


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells, for the kernel spec of the Python that runs the tests."""
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


JS_KERNEL_READY = """() => {
  const app = window.jupyterapp; if (!app) return false;
  const w = app.shell.currentWidget; const sc = w && w.sessionContext;
  const k = sc && sc.session && sc.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle' && !sc.isRestarting;
}"""

JS_EXECUTE = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const out = []; const f = k.requestExecute({code, store_history: false});
  f.onIOPub = (m) => {
    const t = m.header.msg_type;
    if (t === 'stream') out.push(m.content.text);
    else if (t === 'execute_result') out.push(m.content.data['text/plain']);
    else if (t === 'error') out.push('ERROR ' + m.content.ename + ': ' + m.content.evalue);
  };
  await f.done; return out.join('');
}"""


class Lab:
    """A page with a notebook open: run it, ask its kernel, and keep a screenshot when a test fails."""

    def __init__(self, page, server: JupyterServer):
        self.page, self.server = page, server

    def open(self, notebook: str, timeout: float = 120_000) -> None:
        self.page.goto(self.server.url(notebook))
        self.page.wait_for_function(JS_KERNEL_READY, timeout=timeout, polling=250)

    def run_all(self) -> None:
        # not awaited: the command's promise never settles if a dialog opens
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def kernel(self, code: str, timeout: float = 60_000) -> str:
        """Run `code` in the notebook's kernel and return what it printed (errors raise)."""
        self.page.set_default_timeout(timeout)
        out = self.page.evaluate(JS_EXECUTE, code)
        if out.startswith("ERROR "):
            raise AssertionError(f"kernel error for {code!r}: {out}")
        return out.strip()

    def value(self, expr: str) -> object:
        """A Python value from the kernel, through repr/literal_eval."""
        import ast

        return ast.literal_eval(self.kernel(f"print(repr({expr}))"))

    def wait_kernel(self, expr: str, timeout: float = 60.0) -> None:
        """Wait until a Python expression is true in the kernel."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.value(f"bool({expr})"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{expr} still false after {timeout}s")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
