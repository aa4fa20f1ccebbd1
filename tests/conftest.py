import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Generated data sets go to one cache per test session, not the user's home."""
    monkeypatch.setenv("JEPALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
