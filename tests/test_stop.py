"""One stop signal per run: Stop, validation, fine_tune's phases, a Stop before the loop, a stray one while idle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrwidget import Learner, accuracy
from lrwidget.core.events import Observer
from lrwidget.data import digits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_learner(**kw) -> Learner:
    torch.manual_seed(0)
    return Learner(digits(), nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), device="cpu", **kw)


class StopAt(Observer):
    def __init__(self, n: int):
        self.n = n

    def batch_end(self, learn):
        if learn.recorder.n_batches == self.n:
            learn.stop()


def test_a_stray_stop_while_idle_does_not_end_the_next_run():
    learn = make_learner()
    learn.stop()
    assert not learn.busy and learn.guard.signal is None
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "completed" and learn.recorder.n_batches == len(learn.dls.train)


def test_a_stop_asked_for_after_the_learner_was_reserved_but_before_the_loop_counts():
    learn = make_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    sig = learn.guard.reserve("fit")  # as the widget does, on the main thread, before its worker starts
    assert learn.busy and learn.guard.kind == "fit"
    learn.stop()
    with learn.guard.adopt(sig):
        learn.fit(1, 1e-3)
    assert learn.run.end_reason == "stopped" and learn.recorder.n_batches == 0
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert not learn.busy
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "completed", "the next run has a signal of its own"


def test_a_second_run_on_the_thread_of_a_reserved_one_is_refused():
    learn = make_learner()
    with learn.guard.adopt(learn.guard.reserve("fit")):

        class Nested(Observer):
            error = None

            def batch_end(self, learn):
                if self.error is None:
                    try:
                        learn.lr_find(show_plot=False)
                    except RuntimeError as e:
                        self.error = e

        nested = Nested()
        learn.observers.append(nested)
        learn.fit(1, 1e-3)
    assert "this learner is busy with fit" in str(nested.error)


def test_a_stop_during_validation_ends_the_run_there():
    learn = make_learner(metrics=[accuracy])
    calls = []

    def stopping_metric(out, y):
        calls.append(1)
        if len(calls) == 2:
            learn.stop()
        return accuracy(out, y)

    learn.metrics.append(stopping_metric)
    learn.fit(2, 1e-3)
    assert learn.run.end_reason == "stopped"
    assert learn.recorder.n_batches == len(learn.dls.train) and learn.recorder.values == []
    assert len(calls) == 2, "validation ended at the batch after the Stop"


def test_a_stop_in_the_last_batch_of_fine_tunes_first_phase_ends_it_all():
    learn = make_learner(splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())])
    learn.observers.append(StopAt(len(learn.dls.train)))
    learn.fine_tune(2)
    assert learn.run.end_reason == "stopped" and learn.recorder.n_batches == len(learn.dls.train)
    assert not learn.model[0].weight.requires_grad, "the second phase (unfrozen) never started"


def test_the_reason_of_the_first_request_stays():
    learn = make_learner()
    calls = []

    class Twice(Observer):
        def batch_end(self, learn):
            calls.append(1)
            if len(calls) == 3:
                learn.guard.stop("interrupted")
                learn.stop()

    learn.observers.append(Twice())
    learn.fit(1, 1e-3)
    assert learn.run.end_reason == "interrupted" and learn.recorder.n_batches == 3
