"""num_processes=2: DDP in two gloo worker processes on CPU, driven from this process as from a notebook kernel."""

from __future__ import annotations

import glob
import os
import threading

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from torch import nn

from lrwidget import Learner, LRWidget, accuracy
from lrwidget.core.events import Observer
from lrwidget.data import DataLoaders, digits

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # N processes
TIMEOUT = 120


class Net(nn.Module):
    """A model class defined in the test module, as one defined in a notebook cell."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


def children() -> set[int]:
    """Every child process of this one (multiprocessing's resource tracker too), read from /proc."""
    pids = set()
    for f in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(f) as fh:
                pids |= {int(p) for p in fh.read().split()}
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return pids


def workers(pids: set[int]) -> set[int]:
    """lrwidget's worker processes among `pids`."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"lrwidget.parallel.worker" in fh.read():
                    found.add(pid)
        except FileNotFoundError:
            continue
    return found


def make(bs: int = 32, n: int = 2, seed: int = 0, **kw) -> Learner:
    torch.manual_seed(seed)
    loss = kw.pop("loss_func", lambda out, y: nn.functional.cross_entropy(out, y))  # a lambda travels too
    return Learner(digits(bs=bs, seed=seed), Net(), loss_func=loss, metrics=accuracy, num_processes=n, **kw)


def weights(learn) -> dict:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


@pytest.fixture(scope="module")
def learn():
    lrn = make()
    yield lrn
    lrn.close()


def test_two_processes_train_as_one_at_the_same_effective_batch_and_the_weights_come_back(learn):
    before = weights(learn)
    learn.fit_one_cycle(3, 1e-2)
    two = learn.recorder.values
    assert learn.run.end_reason == "completed" and len(two) == 3 and learn.num_processes == 2
    assert not all(torch.equal(before[k], v) for k, v in weights(learn).items()), "the trained weights came back"
    assert learn.opt.state, "and the optimizer state"
    assert learn.validate() == pytest.approx(two[-1][1:], abs=1e-6), "the kernel's model is the trained one"
    one = make(bs=64, n=1)  # the same effective batch: 2 x 32
    one.fit_one_cycle(3, 1e-2)
    assert abs(two[-1][2] - one.recorder.values[-1][2]) <= 0.02, (two[-1], one.recorder.values[-1])
    n_batches = len(learn.dls.train.dataset) // 2 // 32
    assert len(learn.recorder.lrs) == len(learn.recorder.losses) >= 3 * n_batches, "a rank's batches, replayed"
    assert max(learn.recorder.lrs) == pytest.approx(1e-2, rel=0.01)


def test_validation_is_weighted_over_the_ranks_as_one_process_on_the_same_data(learn):
    one = make(n=1)
    one.model.load_state_dict(learn.model.state_dict())
    learn.fit(1, 1e-9)  # a fit that changes nothing: its validation row is the model's
    assert learn.recorder.values[-1][1:] == pytest.approx(one.validate(), abs=1e-6)


def test_stop_ends_every_rank_at_the_same_batch_and_the_weights_come_back(learn):
    before = weights(learn)

    class StopAt(Observer):
        def batch_end(self, lrn):
            if lrn.recorder.n_batches >= 20:
                lrn.stop()

    obs = StopAt()
    learn.observers.append(obs)
    try:
        learn.fit_one_cycle(50, 1e-2)
    finally:
        learn.observers.remove(obs)
    assert learn.run.end_reason == "stopped" and len(learn.recorder.values) < 50
    assert not all(torch.equal(before[k], v) for k, v in weights(learn).items())
    learn.fit(1, 1e-3)  # the pool is still there and in step
    assert learn.run.end_reason == "completed"


def test_lr_find_runs_in_the_processes_and_leaves_the_kernels_learner_as_it_was(learn):
    learn.model.load_state_dict(make(n=1).model.state_dict())  # untrained again: a curve that falls, then rises
    before, opt, rng = weights(learn), learn.opt.state_dict(), torch.get_rng_state()
    res = learn.lr_find(num_it=60, show_plot=False)
    assert len(res.lrs) >= 20 and res.lr_steep is not None and learn.recorder.lr_find_result is res, res.reasons
    assert all(torch.equal(before[k], v) for k, v in weights(learn).items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert learn.opt.state_dict()["param_groups"] == opt["param_groups"]


def test_the_widget_drives_a_two_process_learner(learn):
    w = LRWidget(learn, epochs=2)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    assert w.fit()
    w.wait(TIMEOUT)
    assert w.status.startswith("fit done: 2 epochs") and "<td" in w.table_html.value
    assert len(w.runs) == 1 and len(w.runs[0].values) == 2 and w.runs[0].losses
    assert w.find(num_it=40)
    w.wait(TIMEOUT)
    assert w.result is learn.recorder.lr_find_result and "lr_find done" in w.status
    assert w.fit(100)
    threading.Timer(1.0, w.stop).start()
    w.wait(TIMEOUT)
    assert "fit stopped" in w.status and w.runs[-1].end_reason == "stopped"


def test_the_widgets_search_runs_in_the_processes_each_probe_a_run():
    learn = make()
    try:
        before = weights(learn)
        w = LRWidget(learn, epochs=1)
        assert w.search(budget=1.0)
        w.wait(TIMEOUT)
        (s,) = w.searches
        probes = [r for r in w.runs if r.search]
        assert s.end_reason == "completed" and len(probes) == len(s.lrs) and s.cost <= 1.0
        assert [r.lr_steep for r in probes] == pytest.approx(list(s.lrs)), "rank 0's probes, replayed one by one"
        assert w.lr_steep == pytest.approx(s.best) and all(torch.equal(before[k], v) for k, v in weights(learn).items())
    finally:
        learn.close()


class RankOneFails(Exception):
    pass


def fail_in_rank_one(out, y):
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() == 1:
        raise RankOneFails("the loss of rank 1 failed")
    return nn.functional.cross_entropy(out, y)


def test_an_error_in_one_rank_ends_all_keeps_its_type_and_leaves_no_process():
    others = children()  # the module's learner keeps its workers meanwhile
    learn = make(loss_func=fail_in_rank_one)
    with pytest.raises(RankOneFails, match="the loss of rank 1 failed") as e:
        learn.fit(1, 1e-3)
    assert any("worker rank 1 of 2" in n for n in getattr(e.value, "__notes__", []))
    assert "in fail_in_rank_one" in str(e.value.__cause__), "the rank's own traceback, as the error's cause"
    assert learn.run.end_reason == "error"
    assert children() == others, "no worker is left after an error, even before close()"
    w = LRWidget(learn)  # the same through the widget: its status and wait() have the rank's error
    assert w.fit(1)
    with pytest.raises(RankOneFails):
        w.wait(TIMEOUT)
    assert "RankOneFails: the loss of rank 1 failed" in w.status and "worker rank 1 of 2" in w.status
    assert "in fail_in_rank_one" in w.traceback_html.value, "the rank's traceback, on demand in the widget"
    assert children() == others and w.runs[-1].end_reason == "error"
    learn.loss_func = lambda out, y: nn.functional.cross_entropy(out, y)
    learn.fit(1, 1e-3)  # a fresh pool
    assert learn.run.end_reason == "completed" and len(workers(children() - others)) == 2
    learn.close()
    assert children() == others


def test_close_ends_the_workers_and_is_nothing_for_one_process():
    others = children()
    learn = make()
    learn.fit(1, 1e-3)
    assert len(workers(children() - others)) == 2
    learn.close()
    assert children() == others
    one = make(n=1)
    one.close()
    with pytest.raises(ValueError, match="num_processes must be a whole number >= 1"):
        make(n=0)


def test_num_processes_is_checked_against_the_device_and_the_data_before_any_process_starts(monkeypatch):
    others = children()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"num_processes=2 trains on one GPU per process, but 1 are visible"):
        Learner(digits(), Net(), device="cuda", num_processes=2)  # refused before the model would move
    with pytest.raises(ValueError, match="not on mps: pass num_processes=1, or device='cpu'"):
        Learner(digits(), Net(), device="mps", num_processes=2)
    dls = digits()
    lists = DataLoaders(list(dls.train), list(dls.valid))
    with pytest.raises(TypeError, match="the training data must be a torch.utils.data.DataLoader"):
        Learner(lists, Net(), num_processes=2)
    learn = make()
    learn.dls = lists  # replaced later: refused at the run, before anything starts
    with pytest.raises(TypeError, match="the training data must be a torch.utils.data.DataLoader"):
        learn.fit(1, 1e-3)
    with pytest.raises(ValueError, match="num_processes must be a whole number >= 1"):
        learn.num_processes = 0
    assert learn.num_processes == 2 and learn.worker_pids == [] and children() == others


def test_changing_num_processes_between_runs_takes_effect():
    others = children()
    learn = make()
    try:
        learn.fit(1, 1e-3)
        old = learn.worker_pids
        learn.num_processes = 3
        assert not [p for p in old if os.path.exists(f"/proc/{p}")], "the two workers ended"
        learn.fit(1, 1e-3)
        assert learn.run.end_reason == "completed" and len(learn.worker_pids) == 3
        assert len(workers(children() - others)) == 3
        learn.num_processes = 1
        learn.fit(1, 1e-3)  # in this process
        assert learn.run.end_reason == "completed"
    finally:
        learn.close()
    assert children() == others


def test_a_notebook_cell_defines_the_model_class_and_fits_in_two_processes(tmp_path):
    cells = [
        "import torch\nfrom torch import nn\nfrom lrwidget import Learner, accuracy\nfrom lrwidget.data import digits",
        "class CellNet(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.l = nn.Linear(64, 10)\n    def forward(self, x):\n        return self.l(x)",
        "torch.manual_seed(0)\nlearn = Learner(digits(bs=32), CellNet(), metrics=accuracy, num_processes=2)\n"
        "learn.fit_one_cycle(2, 3e-2)\nprint('ACC', learn.recorder.values[-1][2])",
        # an error class of a cell, raised in rank 1: the kernel catches it as its own class
        "class CellError(Exception):\n    pass\n"
        "def rank_one_fails(out, y):\n    import torch.distributed as dist\n"
        "    if dist.get_rank() == 1:\n        raise CellError('rank 1 failed')\n"
        "    return nn.functional.cross_entropy(out, y)\n"
        "learn.loss_func = rank_one_fails\ntry:\n    learn.fit(1, 1e-3)\nexcept CellError as e:\n"
        "    print('CAUGHT', e, e.__notes__[0])\nlearn.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-2].outputs)
    assert float(out.split("ACC")[1]) > 0.85, out
    caught = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert caught.startswith("CAUGHT rank 1 failed raised in worker rank 1 of 2"), caught
    assert np.isfinite(float(out.split("ACC")[1]))


def test_ctrl_c_during_a_two_process_fit_is_a_stop_of_every_rank(learn):
    import signal

    class CtrlC(Observer):
        sent = False

        def batch_end(self, lrn):
            if lrn.recorder.n_batches >= 10 and not self.sent:
                self.sent = True
                signal.raise_signal(signal.SIGINT)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    obs = CtrlC()
    learn.observers.append(obs)
    try:
        with pytest.raises(KeyboardInterrupt):
            learn.fit_one_cycle(50, 1e-3)
    finally:
        learn.observers.remove(obs)
        signal.signal(signal.SIGINT, before)
    assert learn.run.end_reason == "interrupted" and len(learn.recorder.values) < 50 and not learn.busy
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "completed"


def test_deleting_the_learner_ends_its_workers():
    import gc

    others = children()
    learn = make()
    learn.fit(1, 1e-3)
    assert len(workers(children() - others)) == 2
    del learn
    gc.collect()
    assert children() == others


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_under_ddp(precision):
    learn = make(mixed_precision=precision)
    try:
        learn.fit_one_cycle(1, 1e-2)
        assert learn.run.end_reason == "completed" and np.isfinite(learn.recorder.values[-1][1])
    finally:
        learn.close()


def test_fits_from_the_same_start_are_identical_with_two_processes(learn):
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    w.mark_start()
    w.from_start = True
    for _ in range(2):
        assert w.fit()
        w.wait(TIMEOUT)
    a, b = w.runs
    assert a.values == b.values and a.losses == b.losses, "the same weights, optimizer and shuffle in the workers"


def test_without_cloudpickle_what_cannot_be_sent_is_refused_with_what_to_do(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # `import cloudpickle` fails, as where it is not installed
    learn = make()  # its loss is a lambda: pickle cannot send it by name
    try:
        with pytest.raises(TypeError, match=r"cannot be sent to its worker processes .*pip install cloudpickle"):
            learn.fit(1, 1e-3)
        learn.loss_func = nn.CrossEntropyLoss()  # what pickle sends: classes importable by name
        learn.fit(1, 1e-3)
        assert learn.run.end_reason == "completed"
    finally:
        learn.close()


def test_the_workers_end_with_the_process_that_started_them(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "exits.py"
    script.write_text(
        "import torch\nfrom torch import nn\nfrom lrwidget import Learner\nfrom lrwidget.data import digits\n"
        "if __name__ == '__main__':\n"
        "    learn = Learner(digits(bs=32), nn.Linear(64, 10), num_processes=2)\n"
        "    learn.fit(1, 1e-3)\n"
        "    print('PIDS', *learn.worker_pids, flush=True)\n"  # no close(): the interpreter just exits
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pids = [int(p) for p in r.stdout.split("PIDS")[1].split()]
    assert len(pids) == 2 and not [p for p in pids if os.path.exists(f"/proc/{p}")], "a worker outlived its kernel"


def test_no_child_process_is_left_after_close_or_an_error(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "kids.py"  # a fresh process: nothing of other tests' learners in its children
    script.write_text(
        "import glob, os\nfrom torch import nn\nfrom lrwidget import Learner\nfrom lrwidget.data import digits\n"
        "def kids():\n"
        "    return sorted(int(p) for f in glob.glob(f'/proc/{os.getpid()}/task/*/children') "
        "for p in open(f).read().split())\n"
        "def rank_one_fails(out, y):\n"
        "    import torch.distributed as dist\n"
        "    if dist.get_rank() == 1:\n"
        "        raise ValueError('rank 1 failed')\n"
        "    return nn.functional.cross_entropy(out, y)\n"
        "if __name__ == '__main__':\n"
        "    learn = Learner(digits(bs=32), nn.Linear(64, 10), num_processes=2)\n"
        "    learn.fit(1, 1e-3)\n"
        "    print('RUNNING', len(kids()))\n"
        "    learn.close()\n"
        "    print('CLOSED', kids())\n"
        "    learn.loss_func = rank_one_fails\n"
        "    try:\n"
        "        learn.fit(1, 1e-3)\n"
        "    except ValueError:\n"
        "        print('ERROR', kids())\n"
        "    learn.loss_func = nn.functional.cross_entropy\n"
        "    learn.fit(1, 1e-3)\n"
        "    learn.close()\n"
        "    print('AGAIN', kids(), flush=True)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    said = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert said == {"RUNNING": "2", "CLOSED": "[]", "ERROR": "[]", "AGAIN": "[]"}, (said, r.stderr[-2000:])
    assert "leaked" not in r.stderr, "the resource tracker ended with nothing left to clean up"


def test_a_worker_killed_mid_run_ends_the_run_and_leaves_no_process():
    import signal

    others = children()
    learn = make()

    class Kill(Observer):
        done = False

        def batch_end(self, lrn):
            if lrn.recorder.n_batches >= 5 and not self.done:
                self.done = True
                os.kill(lrn.worker_pids[1], signal.SIGKILL)  # as the OOM killer would

    learn.observers.append(Kill())
    with pytest.raises(RuntimeError) as e:  # gloo's own "Connection reset by peer" in rank 0, or rank 1 found gone
        learn.fit_one_cycle(50, 1e-3)
    said = " ".join([str(e.value), *getattr(e.value, "__notes__", [])])
    assert "'lrwidget-rank1': -9" in said, said
    assert learn.run.end_reason == "error" and children() == others, "rank 0, stuck in a collective, is ended too"
    learn.observers.clear()
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "completed"
    learn.close()


def test_fine_tune_runs_both_phases_in_the_processes(learn):
    before = weights(learn)
    starts = []

    class Starts(Observer):
        def fit_start(self, lrn):
            starts.append(lrn.run.n_epoch)

    obs = Starts()
    learn.observers.append(obs)
    try:
        learn.fine_tune(2, base_lr=1e-3, freeze_epochs=1)
    finally:
        learn.observers.remove(obs)
    assert starts == [1, 2], "the frozen phase, then the unfrozen one, each told to the observers"
    assert learn.run.end_reason == "completed" and len(learn.recorder.values) == 2
    assert not all(torch.equal(before[k], v) for k, v in weights(learn).items())


def test_accumulation_in_two_processes_steps_as_one_process_at_the_whole_batch():
    # in order, no shuffle: rank r takes samples r, r + 2, ...; two of its batches of 16 on each of two ranks are
    # the 64 samples of one batch of one process, so each step is the same mean gradient
    from torch.utils.data import DataLoader, Subset

    from lrwidget import DataLoaders

    dls = digits(bs=64)
    ds = Subset(dls.train.dataset, range(1024))
    runs = []
    for n, bs, accum in ((1, 64, 1), (2, 16, 2)):
        torch.manual_seed(0)
        learn = Learner(
            DataLoaders(DataLoader(ds, batch_size=bs), dls.valid), Net(), metrics=accuracy, num_processes=n,
            accum_steps=accum,
        )  # fmt: skip
        learn.fit_one_cycle(1, 1e-2)
        runs.append((weights(learn), learn.recorder.lrs, learn.recorder.values))
        learn.close()
    (w1, lrs1, v1), (w2, lrs2, v2) = runs
    assert len(lrs1) == len(lrs2) == 16
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5, msg=k)
    assert v2[0][1:] == pytest.approx(v1[0][1:], abs=1e-4)


def test_a_start_on_disk_gives_identical_fits_and_an_exact_reset_with_two_processes(tmp_path):
    learn = make(snapshot="disk", snapshot_dir=tmp_path)
    try:
        start = weights(learn)
        w = LRWidget(learn, epochs=1)
        w.lr_min, w.lr_steep = 1e-3, 1e-2
        w.from_start = True
        for _ in range(2):
            assert w.fit()
            w.wait(TIMEOUT)
        a, b = w.runs
        assert a.values == b.values and a.losses == b.losses and "on disk in" in w.status
        w.reset()
        assert all(torch.equal(start[k], v) for k, v in weights(learn).items())
        w.close()
        left = [p.name for p in tmp_path.iterdir()]
        assert all(n.startswith("lrwidget-ranks-") for n in left), "the start's copy went; the workers' folder stays"
    finally:
        learn.close()
    assert list(tmp_path.iterdir()) == [], "and the workers' folder went with them"


SCRIPT = """\
import os
import torch
from torch import nn
from lrwidget import Learner, accuracy
from lrwidget.data import digits

with open(os.environ["RAN"], "a") as f:  # top-level code with a side effect: it must run once
    f.write(f"{os.getpid()}\\n")


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    learn = Learner(digits(bs=32), model, metrics=accuracy, num_processes=2)
    learn.fit_one_cycle(1, 1e-2)
    print("DONE", learn.run.end_reason, learn.recorder.values[-1][2], os.getpid(), flush=True)


"""


@pytest.mark.parametrize("guarded", [False, True], ids=["top-level", "main-guard"])
def test_a_script_trains_in_two_processes_and_its_top_level_code_runs_once(tmp_path, guarded):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    # as the article's code is written (the calls at the top level), or behind the main guard
    script.write_text(SCRIPT + ("if __name__ == '__main__':\n    main()\n" if guarded else "main()\n"))
    ran = tmp_path / "ran.txt"
    env = {**os.environ, "RAN": str(ran)}
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("DONE")]
    _, reason, acc, pid = line.split()
    assert reason == "completed" and float(acc) > 0.5
    assert ran.read_text().split() == [pid], "the top-level code ran once, in the main process, never in a worker"


class Scaled(Learner):
    """A subclass with its own __init__ and an override the loop calls: the workers must run it as written."""

    def __init__(self, dls, model, factor, **kw):
        super().__init__(dls, model, **kw)
        self.factor = factor

    def loss_for(self, y):
        lf, on_logits = super().loss_for(y)
        return (lambda out, target: self.factor * lf(out, target)), on_logits


def test_a_subclass_of_learner_keeps_its_overrides_in_the_worker_processes():
    torch.manual_seed(0)
    learn = Scaled(digits(bs=32), Net(), 0.0, metrics=accuracy, wd=0.0, num_processes=2)
    before = weights(learn)
    try:
        learn.fit(1, 1e-2)
        assert learn.run.end_reason == "completed"
        assert learn.recorder.values[-1][0] == 0.0, "rank 0 trained on the subclass's loss (scaled to 0)"
        assert all(torch.equal(before[k], v) for k, v in weights(learn).items()), "no rank had a gradient"
        learn.factor = 1.0  # its own attribute travels with it
        learn.fit(1, 1e-2)
        assert learn.recorder.values[-1][0] > 0.1
        assert not all(torch.equal(before[k], v) for k, v in weights(learn).items())
    finally:
        learn.close()
