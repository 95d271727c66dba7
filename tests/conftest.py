"""Shared test setup: tests never reach the network (weights and data are never downloaded)."""

from __future__ import annotations

import socket

import pytest
import torch

LOCAL = ("127.", "localhost", "::1", "0.0.0.0")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse connections and name lookups beyond this machine, so a download fails at once and loudly."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def local(host) -> bool:
        return not isinstance(host, str) or host.startswith(LOCAL)

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
            raise OSError(f"tests must not use the network (connect to {address!r})")
        return connect(self, address)

    def guarded_getaddrinfo(host, *a, **k):
        if not local(host):
            raise OSError(f"tests must not use the network (lookup of {host!r})")
        return getaddrinfo(host, *a, **k)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: on 2 busy cores, torch's intra-op threads only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can act on a failure (screenshots)."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def pytest_collection_modifyitems(config, items):
    """Leave the GPU tests out unless the marker expression names them (`-m gpu`): `-m "not slow"` replaces any
    default marker expression, so they cannot be left out by pyproject's addopts."""
    if "gpu" in (config.option.markexpr or ""):
        return
    kept = [i for i in items if i.get_closest_marker("gpu") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("gpu") is not None])
        items[:] = kept
