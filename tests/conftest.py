import os
from pathlib import Path

import pytest
import torch
import torch.utils._python_dispatch

import jepalab

PACKAGE = os.path.dirname(jepalab.__file__)

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
def group(tmp_path) -> str:
    """Where a 2-process gloo group meets: a file store's URL (`init_method`). Not a TCP
    port: a port found free here can be taken by another test's process before the group
    binds it (CI failed once on EADDRINUSE)."""
    return (tmp_path / "group").as_uri()


@pytest.fixture(scope="session")
def _cache_root(tmp_path_factory) -> Path:
    """One cache per test session, shared by its xdist workers (data.shapes.cached locks)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "cache"


@pytest.fixture(autouse=True)
def _cache(_cache_root, monkeypatch):
    """Generated data sets go to the session's cache, not the user's home."""
    monkeypatch.setenv("JEPALAB_CACHE", str(_cache_root))


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts reads of a tensor's value back to the host (`.item()`, `float(t)`, `bool(t)`:
    aten._local_scalar_dense), by the jepalab file and line that made them. On a GPU each
    is a sync that stalls the step. Masks and data are drawn on the host by design, and
    reads inside torch (its optimisers keep their step counters on the host) or third-party
    code are not counted. Thread-local: the prefetch thread is not watched."""

    HOST_SIDE = ("masks.py", "data/")
    MACHINERY = ("tests/conftest.py", "torch/_compile.py", "torch/_dynamo/eval_frame.py",
                 "torch/utils/_python_dispatch.py")

    def __init__(self):
        super().__init__()
        self.reads: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            import traceback

            frames = traceback.extract_stack()
            while frames and frames[-1].filename.replace(os.sep, "/").endswith(self.MACHINERY):
                frames.pop()  # this mode's own frames: the caller is the next one out
            where = os.path.relpath(frames[-1].filename, PACKAGE).replace(os.sep, "/")
            if not where.startswith("..") and not where.startswith(self.HOST_SIDE):
                key = f"{where}:{frames[-1].lineno}"
                self.reads[key] = self.reads.get(key, 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def host_reads():
    """`with host_reads() as counter:` ... `counter.reads`: {file:line: count} (see _HostReads)."""
    return _HostReads
