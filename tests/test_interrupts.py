"""Ctrl-C and the kernel's interrupt stop a run as Stop does; a run left going at exit is stopped and joined."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from lrwidget import Learner, LRWidget
from lrwidget.core.events import Observer
from lrwidget.data import digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
SETUP = """
import os, signal, sys, threading, time
import torch
from torch import nn
torch.set_num_threads(1)
from lrwidget import Learner, LRWidget
from lrwidget.data import digits
torch.manual_seed(0)
learn = Learner(digits(), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), device="cpu")
start = [p.detach().clone() for p in learn.model.parameters()]
w = LRWidget(learn)

def changed():
    return any(not torch.equal(a, b) for a, b in zip(start, learn.model.parameters()))

def workers():
    return [t.name for t in threading.enumerate() if t.name.startswith("lrwidget")]

def blocked_in_wait():
    # True while the main thread waits on the run's end inside w.wait(): in Background.wait's try, not entering it
    from lrwidget.widget.background import Background

    f = sys._current_frames().get(threading.main_thread().ident)
    if f is None or f.f_code is not threading.Condition.wait.__code__:
        return False
    while f is not None and f.f_code is not Background.wait.__code__:
        f = f.f_back
    return f is not None

def once_blocked_in_wait(act):
    # act() from a thread once the main thread is blocked in w.wait(): the event itself, not a guess at a time
    def poll():
        while not blocked_in_wait():
            time.sleep(0.01)
        act()
    threading.Thread(target=poll, daemon=True).start()
"""


def make_learner() -> Learner:
    torch.manual_seed(0)
    return Learner(digits(), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), device="cpu")


class CtrlC(Observer):
    """Sends SIGINT to this process at batch `at` (`times` of them), as Ctrl-C in a terminal would."""

    def __init__(self, at: int, times: int = 1):
        self.at, self.times = at, times

    def batch_end(self, learn):
        if learn.recorder.n_batches == self.at:
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


def test_ctrl_c_during_a_fit_on_the_main_thread_stops_it_at_the_next_batch_and_keeps_the_weights():
    learn = make_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    handler = signal.getsignal(signal.SIGINT)
    learn.observers.append(CtrlC(5))
    with pytest.raises(KeyboardInterrupt):
        learn.fit_one_cycle(3, 1e-2)
    assert learn.run.end_reason == "interrupted" and learn.recorder.n_batches == 5, "ended at the batch boundary"
    assert not all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters())), "the 5 batches are kept"
    assert len(learn.recorder.losses) == 5 and not learn.busy
    assert signal.getsignal(signal.SIGINT) is handler, "the handler before the run is back"
    learn.observers.clear()
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "completed"


def test_ctrl_c_during_lr_find_on_the_main_thread_restores_the_state():
    learn = make_learner()
    learn.fit(1, 1e-3)
    before = [p.detach().clone() for p in learn.model.parameters()]
    opt_before = [v.clone() for s in learn.opt.state.values() for v in s.values() if torch.is_tensor(v)]
    rng = torch.get_rng_state()
    learn.observers.append(CtrlC(7))
    with pytest.raises(KeyboardInterrupt):
        learn.lr_find(show_plot=False)
    assert learn.run.end_reason == "interrupted"
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    opt_after = [v for s in learn.opt.state.values() for v in s.values() if torch.is_tensor(v)]
    assert all(torch.equal(a, b) for a, b in zip(opt_before, opt_after)) and torch.equal(rng, torch.get_rng_state())
    res = learn.recorder.lr_find_result
    assert (
        res.end_reason == "interrupted" and len(res.lrs) == 7 and "interrupted after 7 steps" in res.reasons["lr_min"]
    )


def test_a_second_ctrl_c_raises_at_once_and_the_run_still_ends_in_order():
    learn = make_learner()
    learn.observers.append(CtrlC(3, times=2))
    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, 1e-3)
    assert learn.run.end_reason == "interrupted" and learn.recorder.n_batches == 3 and not learn.busy


def run_child(code: str, interrupt: bool, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python; with `interrupt`, send it SIGINT once it prints READY."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    if interrupt:
        for line in p.stdout:
            lines.append(line)
            if line.startswith("READY"):
                p.send_signal(signal.SIGINT)
                break
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(lines) + out, err)


def test_sigint_while_wait_blocks_stops_the_fit_and_a_later_wait_really_waits():
    code = SETUP + textwrap.dedent("""
        w.fit(1000)
        while learn.recorder.n_batches < 5:
            time.sleep(0.01)
        once_blocked_in_wait(lambda: os.kill(os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        try:
            w.wait(120)
        except KeyboardInterrupt:
            print("KeyboardInterrupt after", round(time.monotonic() - t0, 1))
        print("end_reason", learn.run.end_reason, "busy", w.busy, learn.busy, "changed", changed())
        print("status", w.status)
        print("workers", workers())
        w.fit(1)
        w.wait(120)
        print("then", learn.run.end_reason, len(learn.recorder.values), "busy", w.busy)
    """)
    r = run_child(code, interrupt=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KeyboardInterrupt after" in r.stdout, r.stdout
    assert "end_reason interrupted busy False False changed True" in r.stdout, r.stdout
    assert "status fit interrupted after " in r.stdout and "the weights keep the training done" in r.stdout
    assert "workers []" in r.stdout and "then completed 1 busy False" in r.stdout, r.stdout


def test_a_run_left_going_at_exit_is_stopped_and_joined():
    # registered before lrwidget is imported, so it runs after lrwidget's own exit handler
    code = "import atexit\natexit.register(lambda: print('at exit', learn.run.end_reason, workers(), flush=True))\n"
    code += SETUP + textwrap.dedent("""
        w.fit(1000)
        while learn.recorder.n_batches < 5:
            time.sleep(0.01)
        print("leaving with the fit going:", w.busy, flush=True)
    """)
    r = run_child(code, interrupt=False)
    assert r.returncode == 0 and "terminate called" not in r.stderr, r.stdout + r.stderr
    # stopped, not waited out: 1000 epochs would outlast run_child's timeout
    assert "leaving with the fit going: True" in r.stdout and "at exit stopped []" in r.stdout, r.stdout


def test_the_kernels_interrupt_stops_a_widget_run_when_idle_and_during_wait(tmp_path):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:

        def execute(code: str, timeout: float = 120) -> tuple[str, dict]:
            out = []

            def hook(msg):
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}\n")

            reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
            return "".join(out), reply["content"]

        def wait_for_batches(n: int) -> None:
            execute(f"while learn.recorder.n_batches < {n}: time.sleep(0.01)")

        out, reply = execute(SETUP + "w.fit(1000)")
        assert reply["status"] == "ok", out
        wait_for_batches(5)  # the kernel is idle from here: the widget trains in its worker thread
        km.interrupt_kernel()
        out, _ = execute("w.wait(60); print(learn.run.end_reason, '|', w.status, '|', workers(), changed())")
        assert out.startswith("interrupted | fit interrupted after "), out
        assert out.rstrip().endswith("| [] True"), out

        execute("w.fit(1000)")
        wait_for_batches(5)
        # the cell's sign, once it is blocked in wait(): an interrupt before that ends the cell and not the run
        waiting = tmp_path / "waiting"
        msg_id = kc.execute(f"once_blocked_in_wait(lambda: open({str(waiting)!r}, 'w').close()); w.wait(120)")
        while not waiting.exists():
            time.sleep(0.01)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # values from the reply itself (user_expressions), not from printed text, whose stream may come late
        expr = "repr((learn.run.end_reason, w.busy, learn.busy, workers()))"
        reply = kc.execute_interactive("w.wait(60)", timeout=120, user_expressions={"r": expr})["content"]
        assert reply["status"] == "ok", reply
        said = reply["user_expressions"]["r"]["data"]["text/plain"]
        assert said == "\"('interrupted', False, False, [])\"", said
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def interrupt_a_widget_fit(learn) -> LRWidget:
    """Start a long Fit in the widget's worker, then Ctrl-C this process (the main thread is free meanwhile)."""
    # Python's own Ctrl-C handler, as in a terminal: a shell script's background job (nohup, `&`) starts Python
    # with SIGINT ignored, where no Ctrl-C would raise
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        w = LRWidget(learn)
        assert w.fit(1000)
        deadline = time.monotonic() + 60
        while w.learn.recorder.n_batches < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):  # the main thread gets it as ever; the run gets a Stop
            signal.raise_signal(signal.SIGINT)
        w.wait(60)
    finally:
        signal.signal(signal.SIGINT, before)
    return w


def test_ctrl_c_while_a_widget_trains_in_the_background_stops_it():
    learn = make_learner()
    w = interrupt_a_widget_fit(learn)
    assert learn.run.end_reason == "interrupted" and "fit interrupted after" in w.status and not w.busy
    assert w.fit(1) and w.wait(60) is None and learn.run.end_reason == "completed", "the next run is not interrupted"
