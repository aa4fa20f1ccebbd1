"""Nothing jepalab loads is unpickled: a malicious pickle under any name it reads is refused
and its payload never runs (checkpoint files, an encoder file, a CIFAR batch is tested in
tests/data/test_files.py)."""
import pickle
import shutil

import pytest

import jepalab
from jepalab import checkpoint
from jepalab.config import load_config
from jepalab.errors import UserError
from jepalab.train import train

pytestmark = pytest.mark.xdist_group("safe-loading")  # module fixtures: built once

TINY = ["data.name=digits", "data.image_size=16", "model.patch_size=4", "train.batch_size=16",
        "train.monitor_every=0", "optim.warmup_steps=1", "method.predictor_depth=1",
        "method.predictor_width=32", "method.min_keep=2", "train.steps=2"]


class Payload:
    """Unpickling this creates `marker`: the proof that a pickle was run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious(path, marker):
    """Write a pickle whose loading would create `marker`."""
    path.write_bytes(pickle.dumps({"weights": Payload(marker)}))


def test_the_payload_is_live(tmp_path):
    """What the tests below plant runs when unpickled: the refusals are real."""
    marker, file = tmp_path / "payload-ran", tmp_path / "model.safetensors"
    malicious(file, marker)
    pickle.loads(file.read_bytes())
    assert marker.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(load_config("ijepa-shapes", TINY), run, show_progress=False)
    return run


@pytest.mark.parametrize("name", ["model.safetensors", "encoder.safetensors",
                                  "optimizer.safetensors", "state.json"])
def test_a_pickle_under_a_checkpoint_name_is_refused(trained, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    folder = checkpoint.latest(run)
    marker = tmp_path / "payload-ran"
    malicious(folder / name, marker)
    with pytest.raises(UserError, match="no usable checkpoint"):
        train(load_config("ijepa-shapes", TINY + ["train.steps=4"]), run, resume=True,
              show_progress=False)
    if name in ("encoder.safetensors", "state.json"):
        with pytest.raises(UserError, match="state.json|damaged"):
            jepalab.load(run)
    assert not marker.exists()


def test_a_pickle_given_as_an_encoder_file_is_refused(tmp_path):
    marker, file = tmp_path / "payload-ran", tmp_path / "encoder.safetensors"
    malicious(file, marker)
    with pytest.raises(UserError, match="not a safetensors file"):
        jepalab.load(file)
    assert not marker.exists()
