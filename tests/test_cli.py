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
    (["collect", "two-room", "--episodes", "1", "--hold", "0.5"], ["--hold", ">= 1", "0.5"]),
    (["collect", "two-room", "--policy", "noisy-expert", "--hold", "1"],
     ["--hold", "does not apply to --policy noisy-expert", "--noise"]),
    (["collect", "two-room", "--noise", "1"], ["--noise", "does not apply to --policy random"]),
    (["collect", "pusht", "--speed", "0.5"], ["--speed", "does not apply to --policy random"]),
    (["collect", "pusht", "--policy", "noisy-expert", "--speed", "-1"], ["--speed", "> 0", "-1"]),
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


def test_a_bug_is_shown_whole_with_a_request_for_a_report(monkeypatch, capsys):
    """An internal error is never mistaken for bad input: traceback, report line, exit 1."""
    import jepalab.train

    def broken(*args, **kwargs):
        raise KeyError("an internal key")  # a ValueError / KeyError used to read as bad input

    monkeypatch.setattr(jepalab.train, "train", broken)
    assert main(["train", "ijepa-shapes", "train.steps=1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'an internal key'" in err
    assert "bug in jepalab" in err and "report" in err


def test_a_nonfinite_run_stops_with_exit_3_and_what_to_do(monkeypatch, capsys):
    import jepalab.train
    from jepalab.nonfinite import NonFinite

    def diverges(*args, **kwargs):
        raise NonFinite("non-finite training at step 3 (method ijepa)")

    monkeypatch.setattr(jepalab.train, "train", diverges)
    assert main(["train", "ijepa-shapes", "--quiet"]) == 3
    assert "non-finite training at step 3" in capsys.readouterr().err
