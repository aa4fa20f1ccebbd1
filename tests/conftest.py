import os
import socket

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def port():
    """A free TCP port on the loopback address, for a 2-process gloo group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Generated data sets go to one cache per test session, not the user's home."""
    monkeypatch.setenv("JEPALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
