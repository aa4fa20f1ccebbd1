"""`jepalab bench`: outputs, caching and resume, refusals with exit code 2; the FLOP count;
the accuracy-vs-compute frontier over several budgets."""
import csv
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from jepalab import bench, checkpoint, config, lineup, report
from jepalab.bench import run_bench
from jepalab.cli import build_parser, main
from jepalab.flops import count_step_flops
from jepalab.lineup import BenchOptions, method_config
from jepalab.methods import StepOutput
from jepalab.train import Interrupted, train

pytestmark = pytest.mark.xdist_group("bench")  # module fixtures: built once

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


def read_csv(out, name="bench.csv"):
    with open(out / name) as f:
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
                "wall_s", "train_flops", "train_s"):
        assert float(ijepa[key]) > 0, key
    assert ijepa["steps"] == "4" and rows[1]["steps"] == rows[1]["train_flops"] == ""
    margin = float(ijepa["linear_top1"]) - float(rows[1]["linear_top1"])
    assert float(ijepa["linear_margin"]) == pytest.approx(margin, abs=0.01)
    text = (done / "bench.md").read_text()
    assert "digits · vit_nano" in text and "4 steps x 32" in text and "torch" in text
    assert "jepalab bench --methods ijepa --data digits --budget 4" in text
    assert "| ijepa | 4 |" in text and "VmHWM" in text and "train TFLOP" in text
    assert not {"frontier.png", "frontier.csv"} & {p.name for p in done.iterdir()}
    assert sorted(p.name for p in (done / "runs").iterdir()) == ["ijepa"]  # one budget: NAME


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

    for name in ("ensure_trained", "probe_encoder", "probe_random_init", "train_step_flops"):
        monkeypatch.setattr(bench, name, refuse)
    monkeypatch.setattr(bench, "SEEDS", 1)
    rows = run_bench(options(done))
    assert [r["name"] for r in rows] == ["ijepa", "random init (1 seed)"]
    assert checkpoint.latest(done / "runs" / "ijepa") == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_a_row_cached_before_flops_were_counted_gets_them_without_retraining(done,
                                                                             monkeypatch):
    path = done / "runs" / "ijepa" / "bench_row.json"
    cache = json.loads(path.read_text())
    counted = {key: cache["row"].pop(key) for key in ("steps", "train_s", "train_flops")}
    path.write_text(json.dumps(cache))  # as a bench before the FLOP count left it

    def refuse(*args, **kwargs):
        raise AssertionError("the bench trained or probed again")

    for name in ("ensure_trained", "probe_encoder", "probe_random_init"):
        monkeypatch.setattr(bench, name, refuse)
    monkeypatch.setattr(bench, "SEEDS", 1)
    assert run_bench(options(done))[0]["train_flops"] == counted["train_flops"]
    row = json.loads(path.read_text())["row"]
    assert row.pop("train_s") == pytest.approx(counted.pop("train_s"))  # from samples/s
    assert row == {**cache["row"], **counted}


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
    (["--variant", "vicreg"], ["--variant 'vicreg': no override", "method.cov_coeff=0"]),
    (["--variant", "vicrg method.cov_coeff=0"], ["unknown method 'vicrg'", "'vicreg'"]),
    (["--variant", "vicreg method.cov_cof=0"], ["--variant 'vicreg method.cov_cof=0'",
                                                "did you mean 'cov_coeff'"]),
    (["--variant", "vicreg cov_coeff=0"], ["must look like section.key=value"]),
    (["--variant", "vicreg model.arch=vit_micro"], ["model.arch is shared by every row",
                                                    "method.*, optim.* and train.*"]),
    (["--variant", "vicreg train.steps=9"], ["train.steps is shared by every row"]),
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


def interrupted_bench(args, out, monkeypatch, capsys) -> str:
    """Run the bench with its first training interrupted (as Ctrl-C would); its stderr."""
    def stop(cfg, run_dir, show_progress):
        raise Interrupted(f"stopped at step 2; checkpoint saved in {run_dir}")

    monkeypatch.setattr(bench, "ensure_trained", stop)
    monkeypatch.setattr(bench, "random_init_row", lambda *a: {"linear": 0.1})
    assert main(["bench", *args, "--out", str(out)]) == 130
    return capsys.readouterr().err


def test_interrupt_prints_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    err = interrupted_bench(ARGS, tmp_path, monkeypatch, capsys)
    assert "stopped at step 2" in err
    assert "jepalab bench --methods ijepa --data digits --budget 4 --batch-size 32" in err
    assert f"--out {tmp_path}" in err


def test_default_methods_are_the_non_supervised_shapes_recipes(tmp_path, monkeypatch):
    shutil.copy(config.RECIPES_DIR / "ijepa-shapes.yaml", tmp_path)
    shutil.copy(config.RECIPES_DIR / "ijepa-shapes.yaml", tmp_path / "ijepa-digits.yaml")
    (tmp_path / "supervised-shapes.yaml").write_text("method:\n  name: supervised\n")
    monkeypatch.setattr(config, "RECIPES_DIR", tmp_path)
    assert lineup.available_methods() == ["ijepa"]
    assert lineup.parse_methods("") == ["ijepa"]


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


def test_every_run_trains_in_the_bench_precision(tmp_path, monkeypatch):
    """--precision means what train.precision means, resolved once on this machine so the
    command that reproduces the bench names the precision the runs computed in."""
    from jepalab import lineup, train

    assert method_config("ijepa", options(tmp_path, precision="fp32")).train.precision == "fp32"
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    native = options(tmp_path)  # the default: bf16-native
    assert method_config("ijepa", native).train.precision == "bf16"
    assert "--precision bf16" in native.command()
    assert method_config("ijepa", options(tmp_path, precision="auto")).train.precision == "fp32"
    monkeypatch.setattr(train, "native_bf16", lambda device: False)
    assert method_config("ijepa", options(tmp_path)).train.precision == "fp32"
    with pytest.raises(config.ConfigError,
                       match="--precision 'fp64': choose auto, fp32, bf16, bf16-native$"):
        lineup.check_options(options(tmp_path, precision="fp64"))
    with pytest.raises(config.ConfigError, match="shared"):
        lineup.parse_entries(options(tmp_path, methods="",
                                     variants=["ijepa train.precision=fp32"]))


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


# ----- the FLOP count -----
class Linear(torch.nn.Module):
    """A "method" whose step is one linear layer on batch["x"], loss the sum of its output."""

    def __init__(self, *widths):
        super().__init__()
        self.layers = torch.nn.Sequential(*(torch.nn.Linear(a, b)
                                            for a, b in zip(widths, widths[1:])))

    def forward(self, batch):
        return StepOutput(self.layers(batch["x"]).sum())


def test_step_flops_of_a_linear_layer_are_three_times_its_forward_matmul():
    batch, width_in, width_out = 8, 5, 3
    forward = 2 * batch * width_in * width_out  # a multiply and an add per weight per sample
    x = torch.randn(batch, width_in, requires_grad=True)
    # backward: the gradient of the input and of the weight, each a matmul the forward's size
    assert count_step_flops(Linear(width_in, width_out), {"x": x}) == 3 * forward


def test_step_flops_skip_the_gradient_that_nothing_needs():
    # the data needs no gradient: the first layer's backward is its weight gradient alone
    batch, widths = 4, (6, 5, 3)
    first, second = 2 * batch * widths[0] * widths[1], 2 * batch * widths[1] * widths[2]
    method = Linear(*widths)
    assert count_step_flops(method, {"x": torch.randn(batch, 6)}) == 2 * first + 3 * second
    assert all(p.grad is not None for p in method.parameters())  # a real backward ran


# ----- several budgets: the frontier -----
FRONTIER = ["--methods", "ijepa", "--data", "digits", "--budgets", "4,2", "--batch-size", "32",
            "--quiet"]


@pytest.fixture(scope="module")
def frontier(tmp_path_factory):
    """`jepalab bench --budgets 4,2` through the CLI entry (one random-init seed)."""
    out, threads = tmp_path_factory.mktemp("frontier"), torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JEPALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.setattr(bench, "SEEDS", 1)
        try:
            assert main(["bench", *FRONTIER, "--out", str(out)]) == 0
        finally:
            torch.set_num_threads(threads)
    return out


def test_frontier_has_a_run_and_a_row_per_method_and_budget(frontier):
    assert sorted(p.name for p in (frontier / "runs").iterdir()) == ["ijepa-2", "ijepa-4"]
    for steps in (2, 4):
        assert checkpoint.step_of(checkpoint.latest(frontier / "runs" / f"ijepa-{steps}")) \
            == steps
    rows = read_csv(frontier, "frontier.csv")
    assert list(rows[0]) == list(report.FRONTIER_CSV_FIELDS)
    assert [(r["method"], r["steps"]) for r in rows] == [("ijepa", "2"), ("ijepa", "4")]
    for row in rows:
        for key in ("train_s", "wall_s", "train_flops", "linear_top1", "knn_top1", "rankme"):
            assert float(row[key]) > 0, key
    assert [(r["method"], r["steps"]) for r in read_csv(frontier)] == [
        ("ijepa", "2"), ("ijepa", "4"), ("random init (1 seed)", "")]
    assert (frontier / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_frontier_flops_are_one_step_times_the_steps(frontier):
    two, four = (int(r["train_flops"]) for r in read_csv(frontier, "frontier.csv"))
    assert four == 2 * two


def test_frontier_table_in_bench_md(frontier):
    rows = {(r["method"], r["steps"]): r for r in read_csv(frontier)}
    text = (frontier / "bench.md").read_text()
    assert "jepalab bench --methods ijepa --data digits --budgets 2,4 --batch-size 32" in text
    assert "2/4 steps x 32" in text and "| method | 2 | 4 |" in text
    linear = [f"{float(rows['ijepa', s]['linear_top1']):.1f}" for s in ("2", "4")]
    assert f"| ijepa | {linear[0]} | {linear[1]} |" in text
    random = f"{float(rows['random init (1 seed)', '']['linear_top1']):.1f}"
    assert f"| random init (1 seed) | {random} | {random} |" in text


def test_frontier_rerun_redoes_nothing(frontier, monkeypatch):
    folders = [checkpoint.latest(frontier / "runs" / f"ijepa-{s}") for s in (2, 4)]
    before = {p: p.stat().st_mtime_ns for folder in folders for p in folder.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("the second bench trained, probed or counted again")

    for name in ("ensure_trained", "probe_encoder", "probe_random_init", "train_step_flops"):
        monkeypatch.setattr(bench, name, refuse)
    monkeypatch.setattr(bench, "SEEDS", 1)
    rows = read_csv(frontier, "frontier.csv")
    assert main(["bench", *FRONTIER, "--out", str(frontier)]) == 0
    assert read_csv(frontier, "frontier.csv") == rows
    assert [checkpoint.latest(frontier / "runs" / f"ijepa-{s}") for s in (2, 4)] == folders
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.parametrize("flags, words", [
    (["--budgets", "0"], ["--budgets 0: 0 is not a positive number of steps"]),
    (["--budgets", "abc"], ["--budgets abc: 'abc' is not a number of steps"]),
    (["--budgets", "10,-5"], ["--budgets 10,-5: -5 is not a positive number of steps"]),
    (["--budgets", "10,,20"], ["--budgets 10,,20: '' is not a number of steps"]),
    (["--budget", "4", "--budgets", "2,4"], ["--budget and --budgets: give one",
                                             "--budgets STEPS,STEPS"]),
])
def test_bad_budgets_exit_2_with_a_message(tmp_path, capsys, flags, words):
    assert main(["bench", "--methods", "ijepa", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    for word in [*words, "--budgets"]:
        assert word in err, err
    if "--budget" not in flags:
        assert "positive whole numbers of training steps separated by commas" in err
    assert not (tmp_path / "runs").exists()


def test_frontier_interrupt_prints_the_command_with_its_budgets(tmp_path, monkeypatch, capsys):
    err = interrupted_bench(FRONTIER, tmp_path, monkeypatch, capsys)
    assert f"checkpoint saved in {tmp_path / 'runs' / 'ijepa-2'}" in err  # smallest first
    assert "jepalab bench --methods ijepa --data digits --budgets 2,4 --batch-size 32" in err


def test_each_budget_has_its_own_steps_warmup_and_run_dir(tmp_path):
    opts = options(tmp_path, budget=None, budgets="2400,600", ceiling=True)
    configs = lineup.bench_configs(opts, [lineup.Entry("ijepa")])
    assert list(configs) == [("ijepa", 600), ("supervised (ceiling)", 600),
                             ("ijepa", 2400), ("supervised (ceiling)", 2400)]
    for (label, steps), cfg in configs.items():
        name = "ijepa" if label == "ijepa" else "supervised"
        assert cfg.train.run_dir == str(tmp_path / "runs" / f"{name}-{steps}")
        assert cfg.train.steps == steps
    assert configs["ijepa", 600].optim.warmup_steps == 60  # 10% of 600
    assert configs["ijepa", 2400].optim.warmup_steps == 150  # the recipe's


def test_a_variant_is_its_method_with_its_overrides_in_a_run_of_its_own(tmp_path):
    opts = options(tmp_path, methods="vicreg", budget=None, budgets="100,400", variants=[
        "vicreg method.cov_coeff=0", "lejepa method.lam=0.2 optim.lr=2e-3"])
    configs = lineup.bench_configs(opts, lineup.parse_entries(opts))
    assert list(configs) == [(label, steps) for steps in (100, 400) for label in (
        "vicreg", "vicreg method.cov_coeff=0", "lejepa method.lam=0.2 optim.lr=2e-3")]
    plain, variant = configs["vicreg", 400], configs["vicreg method.cov_coeff=0", 400]
    assert (plain.method.cov_coeff, variant.method.cov_coeff) == (1.0, 0.0)
    assert replace(variant.method, cov_coeff=1.0) == plain.method  # nothing else differs
    assert variant.train.run_dir == str(tmp_path / "runs" / "vicreg_method.cov_coeff=0-400")
    lejepa = configs["lejepa method.lam=0.2 optim.lr=2e-3", 100]
    assert (lejepa.method.lam, lejepa.optim.lr, lejepa.optim.warmup_steps) == (0.2, 2e-3, 10)
    assert (variant.model, variant.data) == (plain.model, plain.data)


def test_variants_alone_train_only_the_variants_and_the_command_reruns_them(tmp_path):
    opts = options(tmp_path, methods="", variants=["vicreg method.cov_coeff=0"])
    assert lineup.parse_entries(opts) == [lineup.Entry("vicreg", ("method.cov_coeff=0",))]
    command = opts.command()
    assert "--methods" not in command and "--variant 'vicreg method.cov_coeff=0'" in command
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.variants == opts.variants and args.methods == ""


def test_video_data_bench_the_moving_shapes_recipes():
    assert lineup.available_methods("videos") == ["vjepa", "vjepa-sigreg"]
    assert not {"vjepa", "vjepa-moving", "supervised"} & set(lineup.available_methods())
    opts = options("/tmp/out", methods="", data="moving_shapes", image_size=32, patch_size=8)
    configs = lineup.bench_configs(opts, lineup.parse_entries(opts))
    assert [label for label, _ in configs] == ["vjepa", "vjepa-sigreg"]
    cfg = configs["vjepa", 4]
    assert cfg.recipe == "vjepa-moving-shapes" and cfg.data.name == "moving_shapes"
    assert cfg.data.frames == 8 and (cfg.data.image_size, cfg.model.patch_size) == (32, 8)


@pytest.mark.parametrize("data, words", [
    ("trajectories:/x.h5", ["--data trajectories:/x.h5", "image or video", "trajectories"]),
    ("moving_shape", ["--data", "did you mean 'moving_shapes'"]),
])
def test_bench_refuses_data_it_has_no_recipes_for(tmp_path, capsys, data, words):
    assert main(["bench", "--data", data, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err


def test_training_flops_average_the_first_steps_mask_draws():
    """I-JEPA's masks change a step's token counts, so one draw misstates the others: the
    bench's FLOPs a step are the mean over the trainer's first steps, each counted on that
    step's own batch and seed (here the draws differ, and the mean lies between them)."""
    from jepalab.build import load_data
    from jepalab.flops import train_step_flops

    cfg = config.load_config("ijepa-shapes", ["data.name=digits", "data.image_size=16",
                                              "train.batch_size=8"])
    data = load_data(cfg)
    means = [0] + [train_step_flops(cfg, data, torch.device("cpu"), steps=k) for k in range(1, 5)]
    draws = [k * means[k] - (k - 1) * means[k - 1] for k in range(1, 5)]  # step k-1's own
    assert max(draws) - min(draws) > 0.05 * means[4], draws
    assert min(draws) < means[4] < max(draws)
