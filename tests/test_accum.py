"""Gradient accumulation: Learner(accum_steps=k) steps the optimizer every k batches; schedules count the steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrwidget import DataLoaders, Learner, LRWidget, accuracy
from lrwidget.core.schedules import lr_range, one_cycle


def data(n: int = 512, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))  # no batchnorm: batches are independent


def learner(bs: int, accum: int, n: int = 512, **kw) -> Learner:
    dls = DataLoaders(DataLoader(data(n), batch_size=bs), DataLoader(data(256, 1), batch_size=128))  # same order
    return Learner(dls, mlp(), metrics=accuracy, accum_steps=accum, **kw)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_four_batches_of_16_accumulated_give_the_weights_of_batches_of_64():
    big, small = learner(64, 1), learner(16, 4)
    for learn in (big, small):
        learn.fit_one_cycle(3, 1e-2)
    for (k, a), b in zip(big.model.state_dict().items(), small.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    rb, rs = big.recorder, small.recorder
    assert len(rs.lrs) == len(rb.lrs) == 3 * 8  # one entry per optimizer step, 8 a epoch
    np.testing.assert_allclose(rs.lrs, rb.lrs)
    np.testing.assert_allclose(rs.raw_losses, rb.raw_losses, rtol=1e-5)  # a step's loss: the mean over its window
    np.testing.assert_allclose(np.array(rs.values), np.array(rb.values), rtol=1e-4)
    assert small.run.n_iter == 8 and small.run.total == 24


def test_a_partial_window_at_the_end_of_an_epoch_is_stepped_and_the_cycle_ends_there():
    learn = learner(16, 3, n=16 * 17)  # 17 batches: windows of 3, 3, 3, 3, 3 and 2
    steps = []
    real_step = learn.opt.step

    def counting_step(*a, **kw):
        steps.append(1)
        return real_step(*a, **kw)

    learn.opt.step = counting_step
    learn.fit_one_cycle(2, 1e-2, div_final=1e4)
    assert len(steps) == 12 and len(learn.recorder.lrs) == 12 and learn.run.total == 12
    lrs, _ = one_cycle(12, np.array([1e-2]), div=25.0, div_final=1e4, pct_start=0.25, moms=learn.moms)
    np.testing.assert_allclose(learn.recorder.lrs, lrs[:, -1])  # one cycle over the 12 steps, not the 34 batches


def test_the_last_partial_window_is_the_mean_of_its_batches():
    # 5 equal batches in windows of 4 and 1, against batches of 64 and 16: the same steps
    a, b = learner(64, 1, n=80), learner(16, 4, n=80)
    for learn in (a, b):
        learn.fit(1, 1e-2)
    # the second step: a batch of 16 alone, in both
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_lr_find_counts_optimizer_steps_and_restores():
    learn = learner(16, 3)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    rng = torch.get_rng_state()
    res = learn.lr_find(num_it=20, stop_div=False, show_plot=False)
    assert len(res.lrs) == 20
    np.testing.assert_allclose(res.lrs, lr_range(1e-7, 10, 20))
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(rng, torch.get_rng_state())


def test_fp16_steps_the_scaler_skips_do_not_advance_lr_find():
    # a loss scaled up a thousandfold overflows fp16 gradients at the scaler's first scales
    learn = Learner(
        learner(32, 1).dls, mlp(), loss_func=lambda o, y: F.cross_entropy(o, y) * 1e3, mixed_precision="fp16"
    )
    res = learn.lr_find(num_it=30, stop_div=False, show_plot=False)
    assert learn.run.skipped > 0
    assert len(res.lrs) == 30
    np.testing.assert_allclose(res.lrs, lr_range(1e-7, 10, 30))  # no rate left out for a skipped step


def test_fp16_with_accumulation_trains():
    learn = learner(16, 4, mixed_precision="fp16")
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][2] > 0.9


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_a_bad_accum_steps_is_refused(bad):
    with pytest.raises((ValueError, TypeError), match="accum_steps"):
        learner(16, bad)
    learn = learner(16, 2)
    with pytest.raises((ValueError, TypeError), match="accum_steps"):
        learn.accum_steps = bad
    assert learn.accum_steps == 2


def test_the_widget_shows_the_steps_and_says_it_in_the_code():
    learn = learner(16, 4)
    w = LRWidget(learn, epochs=1)
    w.lr_min, w.lr_steep = 1e-3, 1e-2
    assert w.fit()
    w.wait(60)
    assert "accum_steps == 4" in w.code and w.code.startswith("learn.fit_one_cycle(1, lr_max=slice(0.001, 0.01))")
    assert "step 8/8" in w.progress_label.value and "4 batches a step" in w.progress_label.value
    assert len(w.runs) == 1 and len(w.runs[0].losses) == 8
    learn.accum_steps = 1
    ns = {"learn": learner(64, 1)}
    exec(w.code, ns)  # the code shown runs as written (the comment says what the call alone cannot)
