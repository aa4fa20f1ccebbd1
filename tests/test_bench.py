"""`jepalab bench`: outputs, caching and resume, refusals with exit code 2."""
import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch

from jepalab import bench, checkpoint, config, report
from jepalab.bench import BenchOptions, method_config, run_bench
from jepalab.cli import main
from jepalab.train import Interrupted, train

ARGS = ["--methods", "ijepa", "--data", "digits", "--budget", "4", "--batch-size", "32",
        "--quiet"]


def options(out, **extra):
    return BenchOptions(**{"methods": "ijepa", "data": "digits", "budget": 4, "batch_size": 32,
                           "out": str(out), "quiet": True, **extra})


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A bench whose ijepa run was stopped at step 2 (as a killed bench leaves it), then
    finished and probed by `jepalab bench` through the CLI entry (one random-init seed
    instead of three, for time)."""
    out, threads = tmp_path_factory.mktemp("bench"), torch.get_num_threads()
    # One thread: on cores shared with other jobs, the probes' small full-batch matmuls run
    # several times slower with two threads than with one.
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JEPALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.setattr(bench, "SEEDS", 1)
        cfg = method_config("ijepa", options(out))
        train(cfg, cfg.train.run_dir, show_progress=False, stop_at=2)
        try:
            assert main(["bench", *ARGS, "--out", str(out)]) == 0
        finally:
            torch.set_num_threads(threads)
    return out


def read_csv(out):
    with open(out / "bench.csv") as f:
        return list(csv.DictReader(f))


def test_writes_table_csv_and_chart(done):
    assert {"bench.md", "bench.csv", "bench.png", "random_init.json"} <= {
        p.name for p in done.iterdir()}
    assert (done / "bench.png").read_bytes()[:4] == b"\x89PNG"
    rows = read_csv(done)
    assert list(rows[0]) == list(report.BENCH_CSV_FIELDS)
    assert [r["method"] for r in rows] == ["ijepa", "random init (1 seed)"]
    ijepa = rows[0]
    for key in ("linear_top1", "knn_top1", "rankme", "samples_per_s", "peak_memory_mib",
                "wall_s"):
        assert float(ijepa[key]) > 0, key
    margin = float(ijepa["linear_top1"]) - float(rows[1]["linear_top1"])
    assert float(ijepa["linear_margin"]) == pytest.approx(margin, abs=0.01)
    text = (done / "bench.md").read_text()
    assert "digits · vit_nano" in text and "4 steps x 32" in text and "torch" in text
    assert "jepalab bench --methods ijepa --data digits --budget 4" in text
    assert "| ijepa |" in text and "VmHWM" in text


def test_four_steps_is_flagged_below_random_init_plus_ten(done):
    assert read_csv(done)[0]["note"] == bench.NOTE


def test_stopped_method_was_resumed_not_restarted(done):
    run_dir = done / "runs" / "ijepa"
    assert checkpoint.step_of(checkpoint.latest(run_dir)) == 4
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # each step logged once


def test_second_run_redoes_nothing(done, monkeypatch):
    folder = checkpoint.latest(done / "runs" / "ijepa")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("the second bench trained or probed again")

    for name in ("ensure_trained", "probe_encoder", "probe_random_init"):
        monkeypatch.setattr(bench, name, refuse)
    monkeypatch.setattr(bench, "SEEDS", 1)
    rows = run_bench(options(done))
    assert [r["name"] for r in rows] == ["ijepa", "random init (1 seed)"]
    assert checkpoint.latest(done / "runs" / "ijepa") == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_other_settings_in_the_same_out_are_refused(done, capsys):
    assert main(["bench", *ARGS, "--budget", "6", "--out", str(done)]) == 2
    err = capsys.readouterr().err
    assert "train.steps: 4 -> 6" in err and "--out" in err


@pytest.mark.parametrize("flags, words", [
    (["--methods", "ijepa,nosuch"], ["unknown method 'nosuch'", "valid: ", "ijepa"]),
    (["--methods", "ijep"], ["'ijep'", "did you mean 'ijepa'"]),
    (["--arch", "vit_huge"], ["--arch", "vit_nano"]),
    (["--budget", "0"], ["--budget", "0"]),
    (["--data", "digts"], ["--data", "did you mean 'digits'"]),
    (["--image-size", "30"], ["--image-size 30", "--patch-size 4"]),
])
def test_bad_options_exit_2_with_a_message(tmp_path, capsys, flags, words):
    assert main(["bench", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "runs").exists()


def test_bad_method_never_tracebacks(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jepalab.cli", "bench", "--methods", "nope",
                             "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown method 'nope'" in result.stderr


def test_interrupt_prints_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    def stop(cfg, run_dir, show_progress):
        raise Interrupted(f"stopped at step 2; checkpoint saved in {run_dir}")

    monkeypatch.setattr(bench, "ensure_trained", stop)
    monkeypatch.setattr(bench, "random_init_row", lambda *a: {"linear": 0.1})
    assert main(["bench", *ARGS, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "stopped at step 2" in err
    assert "jepalab bench --methods ijepa --data digits --budget 4 --batch-size 32" in err
    assert f"--out {tmp_path}" in err


def test_default_methods_are_the_non_supervised_shapes_recipes(tmp_path, monkeypatch):
    shutil.copy(config.RECIPES_DIR / "ijepa-shapes.yaml", tmp_path)
    shutil.copy(config.RECIPES_DIR / "ijepa-quickstart.yaml", tmp_path)
    (tmp_path / "supervised-shapes.yaml").write_text("method:\n  name: supervised\n")
    monkeypatch.setattr(config, "RECIPES_DIR", tmp_path)
    assert bench.available_methods() == ["ijepa"]
    assert bench.parse_methods("") == ["ijepa"]


def test_shared_settings_are_forced_and_warmup_capped(tmp_path):
    recipe = config.load_config("ijepa-shapes")
    short = method_config("ijepa", options(tmp_path, budget=200, arch="vit_micro", seed=3))
    assert short.optim.warmup_steps == 20  # 10% of 200, not the recipe's 150
    assert (short.model.arch, short.train.steps, short.train.seed) == ("vit_micro", 200, 3)
    assert (short.data.name, short.train.batch_size) == ("digits", 32)
    assert short.train.run_dir == str(tmp_path / "runs" / "ijepa")
    assert short.method == recipe.method  # the method's own hyperparameters are kept
    assert (short.optim.lr, short.optim.betas) == (recipe.optim.lr, recipe.optim.betas)
    long = method_config("ijepa", options(tmp_path, budget=5000))
    assert long.optim.warmup_steps == recipe.optim.warmup_steps


def test_a_diverged_method_is_reported_not_a_crash(tmp_path, monkeypatch):
    def diverge(cfg, run_dir, show_progress):
        raise FloatingPointError("loss is nan at step 3; lower optim.lr or check the data")

    monkeypatch.setattr(bench, "ensure_trained", diverge)
    monkeypatch.setattr(bench, "random_init_row", lambda *a: {
        "name": "random init (1 seed)", "linear": 0.1, "knn": 0.1, "rankme": 1.0})
    assert main(["bench", *ARGS, "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path)
    assert rows[0]["method"] == "ijepa" and rows[0]["linear_top1"] == ""
    assert rows[0]["note"].startswith("training failed: loss is nan at step 3")
