"""The command line refuses bad input with a message, never a traceback."""
import subprocess
import sys

import pytest

from jepalab.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "jepalab.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["train", "ijepa-shapes", "train.stpes=5"], ["train.stpes", "steps"]),
    (["train", "ijepa-shape"], ["unknown recipe", "ijepa-shapes"]),
    (["train", "ijepa-shapes", "optim.lr=fast"], ["optim.lr", "'fast'"]),
    (["train", "resume=/no/such/run"], ["resume=/no/such/run", "config.json"]),
    (["probe", "/no/such/run"], ["/no/such/run", "config.json"]),
    (["train", "lewm-two-room", "data.name=shapes"], ["data.name", "trajectories"]),
    (["train", "lewm-two-room", "data.name=trajectories:/no/such.h5"],
     ["/no/such.h5", "jepalab collect"]),
    (["plan", "two-room", "--model", "/no/such/run"], ["/no/such/run", "data.json"]),
    (["collect", "two-room", "--episodes", "0"], ["episodes", ">= 1"]),
    (["collect", "two-room", "--episodes", "1", "--size", "2"], ["size", "[8, 512]"]),
])
def test_bad_input_gives_a_message_not_a_traceback(args, words):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_train_without_recipe_lists_recipes(capsys):
    assert main(["train"]) == 2
    assert "ijepa-shapes" in capsys.readouterr().out


def test_train_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "latest").write_text("checkpoint-0000001\n")
    code = main(["train", "ijepa-shapes", f"train.run_dir={tmp_path}"])
    assert code == 2 and f"resume={tmp_path}" in capsys.readouterr().err
