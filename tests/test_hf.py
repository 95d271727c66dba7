"""Hugging Face transformers models that compute their own loss from the batch's labels (tiny configs, no download)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from lrwidget import DataLoaders, Learner, LRWidget, accuracy

hf_logging.set_verbosity_error()  # tiny configs: transformers warns of token ids outside the small vocabulary
SEQ, VOCAB = 12, 64


class Halves(Dataset):
    """Token sequences from the low half of the vocabulary (label 0) or the high half (label 1), as dicts."""

    def __init__(self, n: int, seed: int, with_labels: bool = True):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.ids = torch.randint(5, 34, (n, SEQ), generator=g) + 29 * self.labels[:, None]
        self.ids[:, 0] = 1
        self.with_labels = with_labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        d = {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long)}
        return {**d, "labels": self.labels[i]} if self.with_labels else d


class Counting(Dataset):
    """Sequences that count up from a random token (mod the vocabulary): each next token follows from the last."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (start + torch.arange(SEQ)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}  # the model shifts the labels itself


def bert(seed: int = 0, **kw) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=2, **kw,
    )  # fmt: skip
    return BertForSequenceClassification(cfg)


def gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def halves(bs: int = 32) -> DataLoaders:
    torch.manual_seed(0)
    return DataLoaders(DataLoader(Halves(512, 0), batch_size=bs, shuffle=True), DataLoader(Halves(256, 1), 64))


def weights(m: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # builds or trains a whole model: over 8 s on a busy 2-core CPU
def test_bert_over_dict_batches_trains_with_its_own_loss_and_accuracy_on_its_logits():
    learn = Learner(halves(), bert(), metrics=accuracy)
    assert learn.loss_func is None
    learn.fit_one_cycle(3, 3e-3)
    train_loss, valid_loss, acc = learn.recorder.values[-1]
    assert acc > 0.95 and valid_loss < 0.2, learn.recorder.values
    assert learn.loss_func is None  # no loss was chosen for it: the model's own
    # validate() is the model's own loss averaged over samples: compare with a hand computation
    m = learn.model.eval()
    with torch.no_grad():
        total = sum(m(**b).loss.item() * len(b["labels"]) for b in learn.dls.valid)
    assert learn.validate()[0] == pytest.approx(total / 256, rel=1e-5)


def test_bert_lr_find_restores_the_model_and_gives_suggestions():
    learn = Learner(halves(), bert(), metrics=accuracy)
    before, opt_before = weights(learn.model), learn.opt.state_dict()
    rng = torch.get_rng_state()
    res = learn.lr_find(num_it=40, show_plot=False)
    assert len(res.lrs) >= 30 and res.lr_steep is not None and res.lr_min is not None
    assert same(before, weights(learn.model)) and torch.equal(rng, torch.get_rng_state())
    assert learn.opt.state_dict()["state"] == opt_before["state"]


def test_training_after_lr_find_equals_training_without_it():
    runs = []
    for find in (False, True):
        learn = Learner(halves(), bert(), metrics=accuracy)
        if find:
            learn.lr_find(num_it=20, show_plot=False)
        learn.fit_one_cycle(1, 3e-3)
        runs.append((weights(learn.model), learn.recorder.values))
    assert same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


def test_a_loss_func_given_wins_and_gets_the_output_without_labels_in_the_model():
    seen = []

    def loss_func(out, y):
        seen.append(out.loss)  # the model was not given the labels, so it computed no loss
        return F.cross_entropy(out.logits, y)

    learn = Learner(halves(), bert(), loss_func=loss_func, metrics=accuracy)
    learn.fit_one_cycle(2, 3e-3)
    assert seen and all(v is None for v in seen)
    assert learn.recorder.values[-1][2] > 0.9


def test_tuple_batches_get_the_default_loss_on_the_logits():
    class Pairs(Dataset):
        def __init__(self, base: Halves):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            return self.base.ids[i], self.base.labels[i]

    torch.manual_seed(0)
    dls = DataLoaders(DataLoader(Pairs(Halves(512, 0)), 32, shuffle=True), DataLoader(Pairs(Halves(256, 1)), 64))
    learn = Learner(dls, bert(), metrics=accuracy)
    learn.fit_one_cycle(2, 3e-3)
    assert isinstance(learn.loss_func, nn.CrossEntropyLoss)
    assert learn.recorder.values[-1][2] > 0.9


def test_tuple_outputs_return_dict_false_the_loss_first_and_the_logits_for_the_metrics():
    learn = Learner(halves(), bert(return_dict=False), metrics=accuracy)
    out = learn.model(**next(iter(learn.dls.train)))
    assert isinstance(out, tuple)
    learn.fit_one_cycle(2, 3e-3)
    assert learn.recorder.values[-1][2] > 0.9


def test_gpt2_trained_on_labels_equal_to_its_input_ids():
    torch.manual_seed(0)
    dls = DataLoaders(DataLoader(Counting(512, 0), 32, shuffle=True), DataLoader(Counting(128, 1), 64))
    learn = Learner(dls, gpt2())
    first = learn.validate()[0]
    assert first == pytest.approx(math.log(VOCAB), rel=0.1)  # an untrained model: about uniform over the vocabulary
    res = learn.lr_find(num_it=30, show_plot=False)
    assert res.lr_steep is not None
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][1] < 0.5 * first, learn.recorder.values


def test_bf16_and_the_widget_with_runs():
    learn = Learner(halves(), bert(), metrics=accuracy, mixed_precision="bf16")
    w = LRWidget(learn, epochs=1)
    assert w.find(num_it=20)
    w.wait(60)
    assert w.finds and w.finds[-1].lr_steep is not None
    w.lr_min, w.lr_steep = 1e-3, 3e-3
    assert w.fit()
    w.wait(60)
    assert len(w.runs) == 1 and w.runs[0].end_reason == "completed"
    assert w.runs[0].metric_names[-2] == "accuracy" and math.isfinite(w.runs[0].values[-1][2])


def test_a_model_that_takes_labels_but_returns_no_loss_is_told_what_to_do():
    class NoLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.EmbeddingBag(VOCAB, 2)

        def forward(self, input_ids, attention_mask=None, labels=None):
            return {"logits": self.emb(input_ids)}

    learn = Learner(halves(), NoLoss())
    with pytest.raises(ValueError, match="takes `labels`.*loss_func"):
        learn.fit(1, 1e-3)


def test_a_dict_output_with_loss_and_logits():
    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.EmbeddingBag(VOCAB, 2)

        def forward(self, input_ids, attention_mask=None, labels=None):
            logits = self.emb(input_ids)
            return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    learn = Learner(halves(), Own(), metrics=accuracy)
    learn.fit_one_cycle(2, 1e-1)
    assert learn.recorder.values[-1][2] > 0.9


def test_importing_lrwidget_imports_neither_transformers_nor_timm():
    import subprocess
    import sys

    code = "import sys, lrwidget; print([m for m in ('transformers', 'timm') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow  # two processes
def test_bert_in_two_processes(one_torch_thread):
    learn = Learner(halves(bs=16), bert(), metrics=accuracy, num_processes=2)  # 2 x 16: the batch of 32 above
    try:
        learn.fit_one_cycle(3, 3e-3)
        assert learn.run.end_reason == "completed" and learn.recorder.values[-1][2] > 0.95, learn.recorder.values
        assert learn.validate() == pytest.approx(learn.recorder.values[-1][1:], abs=1e-5)  # the weights came back
    finally:
        learn.close()
