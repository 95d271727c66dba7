"""The benchmark's small offline problems: fresh loaders and models for a seed, all data generated or shipped."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrwidget import DataLoaders  # noqa: E402
from lrwidget.data import digits  # noqa: E402


@dataclass
class Task:
    """A small offline problem: fresh loaders and models for a seed, the optimizer, and how to score a fit."""

    name: str
    make_dls: Callable[[int], DataLoaders]
    make_model: Callable[[int], nn.Module]
    regression: bool = False
    opt_func: Callable | None = None
    epochs: int = 5  # of the fit at each rate (the issue measured the tiny BERT at 3)


def _loaders(x, y, xv, yv, seed: int, bs: int, bs_valid: int = 256) -> DataLoaders:
    """Shuffled training batches (their order from `seed`) and a validation loader."""
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True, generator=g)
    return DataLoaders(train, DataLoader(TensorDataset(xv, yv), batch_size=bs_valid))


def mlp(seed: int) -> nn.Module:
    """MLP 64-128-10 for the flat digits."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn(seed: int) -> nn.Module:
    """Two conv-BN-ReLU-pool blocks and a linear head for 1x16x16 digits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def regression_data(seed: int, n: int = 2000, n_valid: int = 500, bs: int = 64) -> DataLoaders:
    """y = sin(2 x0) + x1 x2 + x3^2 / 2 - x4 + noise over 8 Gaussian features, standardised."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n + n_valid, 8, generator=g)
    noise = 0.1 * torch.randn(n + n_valid, generator=g)
    y = torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + x[:, 3] ** 2 / 2 - x[:, 4] + noise
    y = ((y - y[:n].mean()) / y[:n].std())[:, None]
    return _loaders(x[:n], y[:n], x[n:], y[n:], seed, bs, bs * 2)


def regression_mlp(seed: int) -> nn.Module:
    """MLP 8-64-64-1."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def bert_data(seed: int, n: int = 2000, n_valid: int = 500, bs: int = 32) -> DataLoaders:
    """16 tokens of 5..63 after a [CLS]; label: more than 7 of the 15 below 34. Dict batches with labels."""

    class Count(Dataset):
        def __init__(self, n: int, seed: int):
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(5, 64, (n, 16), generator=g)
            self.ids[:, 0] = 1
            self.labels = ((self.ids[:, 1:] < 34).sum(1) > 7).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    g = torch.Generator().manual_seed(seed)
    train = DataLoader(Count(n, 2000 + seed), batch_size=bs, shuffle=True, generator=g)
    return DataLoaders(train, DataLoader(Count(n_valid, 9999), batch_size=128))


def bert(seed: int) -> nn.Module:
    """A 2-layer BERT of width 32 from a config (transformers, no download): it computes its own loss."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(cfg)


def parity_data(seed: int, n: int = 2048, n_valid: int = 1024, bits: int = 16, k: int = 3, bs: int = 64):
    """Sparse parity: +-1 bits, the label is the parity of the first k; the others are distractors."""
    g = torch.Generator().manual_seed(3000 + seed)
    x = torch.randint(0, 2, (n + n_valid, bits), generator=g).float() * 2 - 1
    y = (x[:, :k] < 0).sum(1).remainder(2)
    return _loaders(x[:n], y[:n], x[n:], y[n:], seed, bs)


def parity_mlp(seed: int, bits: int = 16, width: int = 64) -> nn.Module:
    """MLP bits-width-2 (ReLU)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(bits, width), nn.ReLU(), nn.Linear(width, 2))


def noisy_digits(seed: int, n: int = 200, noise: float = 0.2, bs: int = 16) -> DataLoaders:
    """200 digits for training, the rest for validation; a fraction `noise` of all labels replaced at random."""
    full = digits(bs=bs, valid_pct=0.0, seed=seed).train.dataset.tensors
    g = torch.Generator().manual_seed(4000 + seed)
    x, y = full[0], full[1].clone()
    flip = torch.rand(len(y), generator=g) < noise
    y[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
    perm = torch.randperm(len(y), generator=g)
    t, v = perm[:n], perm[n:]
    return _loaders(x[t], y[t], x[v], y[v], seed, bs)


def sequence_data(seed: int, n: int = 2048, n_valid: int = 512, length: int = 20, vocab: int = 8, bs: int = 64):
    """Token sequences (one-hot); label: which of tokens 0 and 1 occurs more often (ties to 0)."""
    g = torch.Generator().manual_seed(5000 + seed)
    ids = torch.randint(0, vocab, (n + n_valid, length), generator=g)
    y = ((ids == 1).sum(1) > (ids == 0).sum(1)).long()
    x = nn.functional.one_hot(ids, vocab).float()
    return _loaders(x[:n], y[:n], x[n:], y[n:], seed, bs)


class GRUClassifier(nn.Module):
    """A one-layer GRU over the sequence; a linear head on its last hidden state."""

    def __init__(self, vocab: int = 8, hidden: int = 32, n_out: int = 2):
        super().__init__()
        self.gru = nn.GRU(vocab, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[1][-1])


def gru(seed: int) -> nn.Module:
    """GRUClassifier for sequence_data."""
    torch.manual_seed(seed)
    return GRUClassifier()


def bars_data(seed: int, n: int = 2048, n_valid: int = 512, size: int = 16, bs: int = 64) -> DataLoaders:
    """Noisy 16x16 images of a 7-pixel bar at a random place: horizontal, vertical or either diagonal (4 classes)."""
    g = torch.Generator().manual_seed(6000 + seed)
    m = n + n_valid
    y = torch.randint(0, 4, (m,), generator=g)
    x = 0.5 * torch.randn(m, 1, size, size, generator=g)
    at = torch.randint(3, size - 3, (m, 2), generator=g)
    for k in range(-3, 4):
        dx, dy = torch.tensor([0, k, k, k])[y], torch.tensor([k, 0, k, -k])[y]
        x[torch.arange(m), 0, at[:, 0] + dy, at[:, 1] + dx] += 1.0
    return _loaders(x[:n], y[:n], x[n:], y[n:], seed, bs)


def bn_cnn(seed: int) -> nn.Module:
    """Three conv-BN-ReLU blocks (no conv bias), global average pooling and a linear head: 4 classes."""
    torch.manual_seed(seed)

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4),
    )  # fmt: skip


def deep_tanh(seed: int, depth: int = 6, width: int = 64, std: float = 0.04) -> nn.Module:
    """A deep tanh MLP for the flat digits, initialised small: the signal vanishes and the loss sits at ln 10."""
    torch.manual_seed(seed)
    layers, d = [], 64
    for _ in range(depth):
        lin = nn.Linear(d, width)
        nn.init.normal_(lin.weight, std=std)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10))


def tokens_data(seed: int, n: int = 2048, n_valid: int = 512, length: int = 16, vocab: int = 8, bs: int = 64):
    """Token ids; label: whether token 1 occurs more often than token 0."""
    g = torch.Generator().manual_seed(7000 + seed)
    ids = torch.randint(0, vocab, (n + n_valid, length), generator=g)
    y = ((ids == 1).sum(1) > (ids == 0).sum(1)).long()
    return _loaders(ids[:n], y[:n], ids[n:], y[n:], seed, bs)


class TinyTransformer(nn.Module):
    """torch's TransformerEncoder, 2 layers of width 32, over embedded tokens; mean-pooled linear head."""

    def __init__(self, vocab: int = 8, d: int = 32, length: int = 16):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(length, d))
        layer = nn.TransformerEncoderLayer(d, 2, 64, dropout=0.0, batch_first=True)
        self.enc, self.head = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(x) + self.pos).mean(1))


def transformer(seed: int) -> nn.Module:
    """TinyTransformer for tokens_data."""
    torch.manual_seed(seed)
    return TinyTransformer()


SGD = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.0)

HF_TASKS = [Task("tiny BERT (own loss), AdamW", bert_data, bert, epochs=3)]
TASKS = [
    Task("digits MLP, AdamW", lambda s: digits(bs=64, seed=s), mlp),
    Task("digits CNN, AdamW", lambda s: digits(bs=64, images=True, size=16, seed=s), cnn),
    Task("regression MLP, AdamW", regression_data, regression_mlp, regression=True),
    Task("digits MLP, SGD+momentum", lambda s: digits(bs=64, seed=s), mlp, opt_func=SGD),
    *HF_TASKS,
    Task("sparse parity MLP, AdamW", parity_data, parity_mlp),
    Task("noisy 200 digits MLP, AdamW", noisy_digits, mlp),
    Task("GRU counting, AdamW", sequence_data, gru),
    # added after lr_search's method was chosen on the tasks above: the held-out check
    Task("bars CNN+BN, SGD+momentum", bars_data, bn_cnn, opt_func=SGD),
    Task("deep tanh MLP, small init, AdamW", lambda s: digits(bs=64, seed=s), deep_tanh),
    # added after the pick's lean (search.LEAN) was: held out from every choice
    Task("transformer counting, AdamW", tokens_data, transformer),
]
