"""Exact state copies in memory or on disk (Learner(snapshot=...)): the same training either way, the choice of
"auto", the files gone afterwards however a run ends, a disk that cannot take the copy refused before anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_learner import _StopAt, assert_same, state_of
from torch import nn

import lrwidget.state.snapshot as snapshots
from lrwidget import Learner, LRWidget, accuracy
from lrwidget.core.events import Observer
from lrwidget.data import digits
from lrwidget.state import disk, memory
from lrwidget.state.disk import DiskCopy

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TIMEOUT = 120


def make(seed: int = 0, **kw) -> Learner:
    """A learner whose first layer's weights and AdamW moments (128 KiB each) are written to files on disk."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 10))
    return Learner(digits(seed=seed), model, metrics=accuracy, device="cpu", **kw)


@pytest.fixture
def pieces(monkeypatch):
    """Files of 40 kB: each large tensor is written as several pieces."""
    monkeypatch.setattr(disk, "PIECE", 40_000)


@pytest.fixture
def held(monkeypatch):
    """Every copy taken, held here: its files must go when it is done with, not only when it is garbage."""
    copies, take = [], snapshots.take

    def holding(*a, **k):
        copies.append(take(*a, **k))
        return copies[-1]

    monkeypatch.setattr(snapshots, "take", holding)
    return copies


def trained(**kw) -> Learner:
    learn = make(**kw)
    learn.fit(1, 1e-3)
    learn.model.eval()
    torch.manual_seed(123)
    return learn


def copies_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("lrwidget-"))


class Peek(Observer):
    """Records the copy folders in `folder`, and how many files each holds, at the first batch."""

    def __init__(self, folder: Path):
        self.folder, self.seen = folder, None

    def batch_end(self, learn):
        if self.seen is None:
            self.seen = {name: len(os.listdir(self.folder / name)) for name in copies_in(self.folder)}


def weights(learn: Learner) -> dict:
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


# -- the same training, in memory or on disk --------------------------------------------------------------------


def test_training_after_lr_find_on_disk_is_bit_for_bit_the_training_after_lr_find_in_memory(tmp_path, pieces, held):
    runs = {}
    for where in ("memory", "disk"):
        learn = make(seed=3, snapshot=where, snapshot_dir=tmp_path)
        learn.fit(1, 1e-3)  # an optimizer state to copy too
        peek = Peek(tmp_path)
        learn.observers.append(peek)
        torch.manual_seed(11)
        res = learn.lr_find(num_it=30, show_plot=False)
        learn.observers.remove(peek)
        learn.fit_one_cycle(2, lr_max=3e-3)
        runs[where] = (weights(learn), learn.recorder.values, res.losses, peek.seen, learn.run)
    (wm, vm, lm, seen_m, _), (wd, vd, ld, seen_d, _) = runs["memory"], runs["disk"]
    assert seen_m == {} and len(seen_d) == 1, "memory wrote nothing; disk wrote one folder while lr_find ran"
    assert list(seen_d.values())[0] >= 3 * 4, "three 128 KiB tensors (weight, exp_avg, exp_avg_sq), 4 pieces each"
    assert_same(wm, wd)
    assert vm == vd and len(vm) == 2
    assert (lm == ld).all(), "the lr_find curves too"
    assert copies_in(tmp_path) == [] and held[-1].closed, "the copy is deleted after lr_find"


def test_a_copy_on_disk_puts_back_everything_and_again(tmp_path, pieces):
    learn = trained(snapshot="disk", snapshot_dir=tmp_path)
    learn.model(torch.randn(4, 64)).sum().backward()  # gradients to copy as well
    grads = [p.grad.clone() for p in learn.model.parameters()]
    before = state_of(learn)
    opt_tensors = [t for s in learn.opt.state.values() for t in s.values() if torch.is_tensor(t)]
    saved = learn.take_state()
    assert isinstance(saved, DiskCopy) and saved.folder.parent == tmp_path and len(os.listdir(saved.folder)) > 0
    assert snapshots.said(saved) == f"{memory.fmt_bytes(saved.nbytes)} on disk in {saved.folder}"
    in_memory = sum(t.numel() * t.element_size() for t in _tensors(saved.small))
    assert in_memory < saved.nbytes / 4, "the large tensors are in files, not in memory"
    for _ in range(2):  # a reset, another fit, a reset again: the copy stays as it was
        learn.fit(1, 1e-2)
        learn.model.train()
        assert not all(torch.equal(a, b) for a, b in zip(before["model"].values(), learn.model.state_dict().values()))
        learn.restore_state(saved)
        assert_same(before, state_of(learn))
        assert all(torch.equal(p.grad, g) for p, g in zip(learn.model.parameters(), grads))
        now = [t for s in learn.opt.state.values() for t in s.values() if torch.is_tensor(t)]
        assert all(a is b for a, b in zip(now, opt_tensors)), "read back into the optimizer's own tensors"
    learn.fit(1, 1e-2)
    trained_state = state_of(learn)
    (saved.folder / sorted(os.listdir(saved.folder))[-1]).unlink()  # a cleaner of /tmp took a file
    with pytest.raises(RuntimeError, match=r"was deleted \(or files of it\).*nothing was changed"):
        learn.restore_state(saved)
    assert_same(trained_state, state_of(learn))
    folder = saved.folder
    saved.close()
    assert not folder.exists() and saved.closed
    with pytest.raises(RuntimeError, match="was deleted"):
        learn.restore_state(saved)


def _tensors(o):
    """The tensors a copy holds in memory (not the live parameters it names)."""
    if torch.is_tensor(o) and not isinstance(o, nn.Parameter):
        return [o]
    if isinstance(o, dict):
        o = list(o.values())
    return [t for v in o for t in _tensors(v)] if isinstance(o, (list, tuple)) else []


def test_tied_weights_are_written_once_and_restored_tied(tmp_path):
    torch.manual_seed(0)
    emb, head = nn.Embedding(300, 64), nn.Linear(64, 300, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    saved = snapshots.take(model, None, [], torch.device("cpu"), "disk", tmp_path)
    assert saved.nbytes == 300 * 64 * 4 and len(os.listdir(saved.folder)) == 1
    with torch.no_grad():
        emb.weight.add_(1.0)
    snapshots.restore(saved, model, None, [])
    assert head.weight is emb.weight and torch.equal(emb.weight, saved.read(saved["model"]["0.weight"], "cpu"))
    saved.close()


# -- the choice of "auto" ---------------------------------------------------------------------------------------


def test_where_keeps_a_copy_in_memory_while_it_is_under_half_of_the_memory_available():
    assert snapshots.where("auto", 499, 1000) == "memory"
    assert snapshots.where("auto", 500, 1000) == "disk"
    assert snapshots.where("auto", 10**12, None) == "memory", "nothing known: as before"
    assert snapshots.where("memory", 10**12, 1) == "memory" and snapshots.where("disk", 1, 10**12) == "disk"


def test_auto_chooses_disk_when_little_memory_is_available_and_memory_when_much(monkeypatch, tmp_path):
    learn = trained(snapshot_dir=tmp_path)
    assert learn.snapshot == "auto", "the default"
    n = snapshots.state_bytes(learn.model, learn.opt)
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * n - 1)
    saved = learn.take_state()
    assert isinstance(saved, DiskCopy) and saved.nbytes == n
    saved.close()
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * n + 1)
    assert isinstance(learn.take_state(), dict)
    monkeypatch.setattr(memory, "available_memory", lambda: 3 * n)
    learn.rank = type("Rank", (), {"world": 2})()  # two ranks of this machine, each with its copy: 2n of 3n
    saved = learn.take_state()
    assert isinstance(saved, DiskCopy)
    saved.close()


def test_state_bytes_counts_weights_buffers_grads_and_optimizer_state():
    learn = trained()
    m = learn.model
    n = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    n += sum(t.numel() * t.element_size() for s in learn.opt.state.values() for t in s.values() if torch.is_tensor(t))
    assert snapshots.state_bytes(m, learn.opt) == n
    m(torch.randn(4, 64)).sum().backward()
    assert snapshots.state_bytes(m, learn.opt) == n + sum(p.numel() * 4 for p in m.parameters())


def test_available_memory_reads_the_cgroup_limits_above_the_process(tmp_path):
    v2 = tmp_path / "v2"
    for d, limit, used, inactive in ((v2, "max", 10**9, 0), (v2 / "a", "1000000", 600_000, 100_000)):
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("")
        (d / "memory.max").write_text(f"{limit}\n")
        (d / "memory.current").write_text(f"{used}\n")
        (d / "memory.stat").write_text(f"anon 5\ninactive_file {inactive}\n")
    (v2 / "a" / "b").mkdir()
    (v2 / "a" / "b" / "cgroup.procs").write_text("")  # no limit of its own: its parent's binds
    (tmp_path / "cg2").write_text("0::/a/b\n")
    assert memory._cgroup_room(str(tmp_path / "cg2"), str(v2)) == [500_000]
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "cgroup.procs").write_text("")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("5\n")
    (tmp_path / "cg1").write_text("4:memory:/elsewhere\n1:cpu:/\n")
    assert memory._cgroup_room(str(tmp_path / "cg1"), str(tmp_path / "v1")) == []
    (v1 / "memory.limit_in_bytes").write_text("2000\n")
    assert memory._cgroup_room(str(tmp_path / "cg1"), str(tmp_path / "v1")) == [1995]
    n = memory.available_memory()
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert n is not None and 0 < n <= avail


# -- the files are gone afterwards, however lr_find ends --------------------------------------------------------


def _loss_failing_at(k: int):
    ce, calls = nn.CrossEntropyLoss(), {"n": 0}

    def loss(out, y):
        calls["n"] += 1
        if calls["n"] == k:
            raise ZeroDivisionError("bad loss")
        return ce(out, y)

    return loss


def test_the_copy_is_deleted_after_an_error_in_the_loss_which_keeps_its_type_and_message(tmp_path, held):
    learn = trained(snapshot="disk", snapshot_dir=tmp_path)
    before = state_of(learn)
    ce, learn.loss_func = learn.loss_func, _loss_failing_at(3)
    peek = Peek(tmp_path)
    learn.observers.append(peek)
    with pytest.raises(ZeroDivisionError, match="^bad loss$"):
        learn.lr_find(show_plot=False)
    learn.loss_func = ce
    assert len(peek.seen) == 1 and copies_in(tmp_path) == [] and held[0].closed
    assert_same(before, state_of(learn))


@pytest.mark.parametrize("end", ["stop", "keyboard interrupt"])
def test_the_copy_is_deleted_after_a_stop_or_an_interrupt(tmp_path, end, held):
    learn = trained(snapshot="disk", snapshot_dir=tmp_path)
    before = state_of(learn)
    peek = Peek(tmp_path)
    learn.observers.append(peek)

    def interrupt(_):
        raise KeyboardInterrupt

    if end == "stop":
        learn.observers.append(_StopAt(5, Learner.stop))
        assert learn.lr_find(show_plot=False).end_reason == "stopped"
    else:
        learn.observers.append(_StopAt(4, interrupt))
        with pytest.raises(KeyboardInterrupt):
            learn.lr_find(show_plot=False)
    assert len(peek.seen) == 1 and copies_in(tmp_path) == [] and held[0].closed
    assert_same(before, state_of(learn))


def test_an_interrupt_while_the_copy_is_written_leaves_no_files(tmp_path, monkeypatch):
    learn = trained(snapshot="disk", snapshot_dir=tmp_path)
    before, run = state_of(learn), learn.run
    keep, calls = DiskCopy.keep, {"n": 0}

    def keep_then_interrupt(self, t):
        calls["n"] += 1
        if calls["n"] == 3:
            assert len(copies_in(tmp_path)) == 1
            raise KeyboardInterrupt
        return keep(self, t)

    monkeypatch.setattr(DiskCopy, "keep", keep_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        learn.lr_find(show_plot=False)
    assert copies_in(tmp_path) == [] and learn.run is run, "no step was run"
    assert_same(before, state_of(learn))


# -- a disk that cannot take the copy: refused before anything changes ------------------------------------------


def _refused(learn: Learner, match: str, folder: Path, kind: type[OSError] = OSError) -> None:
    before, run, n = state_of(learn), learn.run, len(learn.recorder.lrs)
    with pytest.raises(OSError, match=match) as e:
        learn.lr_find(show_plot=False)
    assert type(e.value) is kind, "the class of the error the disk gave (a PermissionError stays one)"
    msg = str(e.value)
    assert "nothing was changed" in msg and "snapshot_dir=" in msg and "snapshot='memory'" in msg, msg
    assert learn.run is run and len(learn.recorder.lrs) == n, "no step was run"
    assert_same(before, state_of(learn))
    assert not folder.is_dir() or copies_in(folder) == []


def test_a_read_only_snapshot_dir_is_refused_before_anything_changes(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)  # refused by its mode, for root too (whom the mode alone would not stop writing)
    try:
        learn = trained(snapshot="disk", snapshot_dir=ro)
        _refused(learn, f"cannot be written to {ro}: Permission denied", ro, PermissionError)
        _refused(learn, "the folder is read-only, mode 0o500", ro, PermissionError)
    finally:
        ro.chmod(0o700)


def test_a_snapshot_dir_whose_writes_fail_is_refused_before_anything_changes(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()  # writable by its mode, as a read-only mount or a quota can be
    write = Path.write_bytes

    def read_only(self, data):
        if ro in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return write(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    _refused(
        trained(snapshot="disk", snapshot_dir=ro), f"cannot be written to {ro}: Permission denied", ro, PermissionError
    )


def test_a_snapshot_dir_that_is_a_file_is_refused_before_anything_changes(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("")
    _refused(trained(snapshot="disk", snapshot_dir=f), "is a file, not a folder", tmp_path, NotADirectoryError)


def test_a_full_disk_is_refused_before_anything_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "free_space", lambda folder: 1000)
    _refused(trained(snapshot="disk", snapshot_dir=tmp_path), r"its disk has 1000 B free, [\d.]+ MiB needed", tmp_path)


def test_a_disk_that_fills_up_while_the_copy_is_written_is_refused_before_anything_changes(tmp_path, monkeypatch):
    save, calls = torch.save, {"n": 0}

    def save_until_full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed")
        return save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_until_full)
    _refused(trained(snapshot="disk", snapshot_dir=tmp_path), "writing the copy of the state .* failed", tmp_path)


def test_bad_snapshot_arguments_are_refused():
    with pytest.raises(ValueError, match=r"snapshot must be 'memory', 'disk' or 'auto'.*got 'ram'"):
        make(snapshot="ram")
    with pytest.raises(TypeError, match="snapshot_dir must be a folder's path or None, got int"):
        make(snapshot_dir=3)


def test_the_default_folder_is_the_temporary_one_unless_it_lives_in_memory(monkeypatch, tmp_path):
    import tempfile

    assert disk.default_dir() == Path(tempfile.gettempdir())  # /tmp here is on a disk
    monkeypatch.setattr(disk, "_fs_type", lambda path: "tmpfs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert disk.default_dir() == tmp_path / "lrwidget"


# -- the widget's start ----------------------------------------------------------------------------------------


def widget_runs(where: str, folder: Path) -> tuple:
    """Fit, reset, fit from the start, reset again: what the widget saw, with the start in `where`."""
    learn = make(seed=5, snapshot=where, snapshot_dir=folder)
    start = weights(learn)
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    assert w.fit(1)
    w.wait(TIMEOUT)
    fit_said, on_disk = w.status, copies_in(folder)
    w.reset()
    reset_said = w.status
    assert_same(start, weights(learn))
    w.from_start = True
    assert w.fit(1)
    w.wait(TIMEOUT)
    w.reset()
    assert_same(start, weights(learn))
    out = ([r.values for r in w.runs], weights(learn), fit_said, reset_said, on_disk, w)
    return out


def test_the_widgets_start_on_disk_gives_the_runs_and_resets_of_memory_and_says_where_it_is(tmp_path, held):
    vm, wm, said_m, reset_m, disk_m, w_m = widget_runs("memory", tmp_path)
    vd, wd, said_d, reset_d, disk_d, w_d = widget_runs("disk", tmp_path)
    assert vm == vd and vm[0] == vm[1], "two fits from the same start, the same in memory and on disk"
    assert_same(wm, wd)
    assert disk_m == [] and len(disk_d) == 1
    where = f"the start is {memory.fmt_bytes(w_d.start.state.nbytes)} on disk in {tmp_path / disk_d[0]}"
    assert said_d.startswith("fit done") and said_d.endswith(where) and "on disk" not in said_m
    assert reset_d.startswith("reset:") and reset_d.endswith(where) and "on disk" not in reset_m
    old = w_d.start.state
    w_d.mark_start()  # a new start: the old one's files go
    assert old.closed and len(copies_in(tmp_path)) == 1 and copies_in(tmp_path) != disk_d
    assert w_d.status.startswith("start marked") and f"on disk in {tmp_path / copies_in(tmp_path)[0]}" in w_d.status
    new = w_d.start.state
    w_d.close()
    assert new.closed and copies_in(tmp_path) == [], "the widget closed: its start's files are gone"
    w_m.close()


def test_the_widgets_status_says_where_lr_finds_copy_was(tmp_path, held):
    learn = make(snapshot="disk", snapshot_dir=tmp_path)
    w = LRWidget(learn)
    said = []

    class Listen(Observer):
        def batch_end(self, lrn):
            said.append(w.status)

    learn.observers.append(Listen())
    assert w.find(num_it=20)
    w.wait(TIMEOUT)
    assert said and all(s.startswith("lr_find running: learn.lr_find(") for s in said)
    assert f"; its copy of the state is {learn.run.copy_on_disk}" in said[0] and f"on disk in {tmp_path}" in said[0]
    assert w.status.startswith("lr_find done") and w.status.endswith(f"was {learn.run.copy_on_disk} (deleted)")
    assert copies_in(tmp_path) == [] and held[0].closed
    w.close()


# -- several processes -----------------------------------------------------------------------------------------


class RankOneFails(Exception):
    pass


def fail_in_rank_one_at_step_3(out, y):
    import torch.distributed as dist

    fail_in_rank_one_at_step_3.n = getattr(fail_in_rank_one_at_step_3, "n", 0) + 1
    if dist.is_initialized() and dist.get_rank() == 1 and fail_in_rank_one_at_step_3.n == 3:
        raise RankOneFails("the loss of rank 1 failed")
    return nn.functional.cross_entropy(out, y)


@pytest.mark.slow  # two processes
def test_lr_find_in_two_processes_writes_each_ranks_copy_in_a_folder_that_goes_with_the_workers(tmp_path):
    learn = make(num_processes=2, snapshot="disk", snapshot_dir=tmp_path, loss_func=fail_in_rank_one_at_step_3)
    before = weights(learn)
    try:
        # rank 1 fails while rank 0 waits in a collective with its copy on disk: rank 0 is ended, it deletes nothing
        with pytest.raises(RankOneFails, match="the loss of rank 1 failed"):
            learn.lr_find(num_it=20, show_plot=False)
        assert copies_in(tmp_path) == [], "the ranks' folder went with the workers"
        learn.loss_func = nn.functional.cross_entropy
        res = learn.lr_find(num_it=20, stop_div=False, show_plot=False)  # a fresh pool
        assert len(res.lrs) == 20 and res.end_reason == "completed"
        (ranks,) = copies_in(tmp_path)
        assert ranks.startswith("lrwidget-ranks-") and os.listdir(tmp_path / ranks) == [], "each rank deleted its copy"
        assert f"on disk in {tmp_path / ranks}/lrwidget-" in learn.run.copy_on_disk, (
            "rank 0's copy, as the kernel heard"
        )
        assert_same(before, weights(learn))
    finally:
        learn.close()
    assert copies_in(tmp_path) == []


class SlowToRestoreInRankOne(nn.Sequential):
    """A model whose rank 1 takes a second longer to put its copy back: what a loaded machine did at random."""

    def state_dict(self, *a, **k):
        import time

        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            time.sleep(1)
        return super().state_dict(*a, **k)


@pytest.mark.slow  # two processes
def test_lr_find_in_two_processes_returns_once_the_slower_rank_has_deleted_its_copy(tmp_path):
    torch.manual_seed(0)
    model = SlowToRestoreInRankOne(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    learn = Learner(digits(), model, device="cpu", num_processes=2, snapshot="disk", snapshot_dir=tmp_path)
    before = weights(learn)
    try:
        res = learn.lr_find(num_it=10, stop_div=False, show_plot=False)
        (ranks,) = copies_in(tmp_path)  # read at once: rank 1 was a second behind rank 0 when rank 0 was done
        assert os.listdir(tmp_path / ranks) == [], "rank 1 deleted its copy before lr_find returned"
        assert res.end_reason == "completed" and not learn.busy
        assert_same(before, weights(learn))
    finally:
        learn.close()
    assert copies_in(tmp_path) == []


SCRIPT = """
import gc, os, sys
from torch import nn
from lrwidget import Learner
from lrwidget.data import digits

folder = sys.argv[1]
def learner():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return Learner(digits(), model, num_processes=2, snapshot="disk", snapshot_dir=folder)

dropped = learner()
dropped.lr_find(num_it=10, show_plot=False)
del dropped
gc.collect()
print("after del:", os.listdir(folder))
kept = learner()  # never closed: the exit ends its workers and deletes their folder
kept.lr_find(num_it=10, show_plot=False)
print("before exit:", os.listdir(folder))
"""


@pytest.mark.slow  # two processes, twice
def test_the_ranks_folder_goes_when_the_learner_is_dropped_unclosed_or_the_interpreter_exits(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "copies"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "after del: []" in done.stdout, done.stdout
    assert "before exit: ['lrwidget-ranks-" in done.stdout, done.stdout
    assert os.listdir(folder) == [], "the exit deleted the folder of the learner never closed"


def test_a_new_start_refused_by_the_disk_keeps_the_old_one(tmp_path, monkeypatch):
    learn = make(snapshot="disk", snapshot_dir=tmp_path)
    w = LRWidget(learn, epochs=1)
    w.mark_start()
    old, start = w.start.state, weights(learn)
    learn.fit(1, 1e-2)
    monkeypatch.setattr(memory, "free_space", lambda folder: 0)
    with pytest.raises(OSError, match="its disk has 0 B free"):
        w.mark_start()
    assert w.start.state is old and not old.closed and copies_in(tmp_path) == [old.folder.name]
    w.reset()
    assert_same(start, weights(learn))
    w.close()
