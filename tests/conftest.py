import os
import socket
from pathlib import Path

import pytest
import torch

# pytest-xdist runs the suite in several worker processes (pyproject: -n auto): each gets
# an equal share of the cores, so workers do not spin against each other's threads.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
torch.set_num_threads(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # subprocesses the tests start


def pytest_collection_modifyitems(items):
    """Tests marked `first(seconds)` start first, the longest first: a long test started
    last would run alone on one core at the end while the other workers sit idle."""
    def seconds(item) -> float:
        mark = item.get_closest_marker("first")
        return mark.args[0] if mark else 0.0
    items.sort(key=seconds, reverse=True)  # stable: the others keep their order


@pytest.fixture
def port():
    """A free TCP port on the loopback address, for a 2-process gloo group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _cache_root(tmp_path_factory) -> Path:
    """One cache per test session, shared by its xdist workers (data.shapes.cached locks)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "cache"


@pytest.fixture(autouse=True)
def _cache(_cache_root, monkeypatch):
    """Generated data sets go to the session's cache, not the user's home."""
    monkeypatch.setenv("JEPALAB_CACHE", str(_cache_root))
