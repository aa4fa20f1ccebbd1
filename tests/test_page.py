"""`jepalab report`: one self-contained HTML page, rendered by a headless Chromium with no
console error, every plot and table present."""
import json
import os
import re
import shutil
import subprocess

import pytest

from jepalab.cli import main
from jepalab.config import load_config
from jepalab.train import train

pytestmark = pytest.mark.xdist_group("page")  # module fixtures: built once

TINY = ["data.name=digits", "data.image_size=16", "model.patch_size=4", "train.batch_size=16",
        "train.log_every=1", "train.monitor_every=2", "optim.warmup_steps=1",
        "method.predictor_depth=1", "method.predictor_width=32", "method.min_keep=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, steps in (("a", 6), ("b", 4)):
        train(load_config("ijepa-shapes", TINY + [f"train.steps={steps}"]), root / name,
              show_progress=False)
    rows = [{"name": "ijepa", "linear": 0.31, "knn": 0.28, "rankme": 9.5},
            {"name": "random init (3 seeds)", "linear": 0.1, "knn": 0.12, "rankme": 6.0,
             "linear_std": 0.004, "knn_std": 0.003, "seeds": 3}]
    (root / "a" / "probe.json").write_text(json.dumps(
        {"run": str(root / "a"), "data": "digits", "arch": "vit_nano", "steps": 6,
         "probe_train_images": 1000, "rows": rows}))
    return root


def test_the_page_holds_every_part_and_nothing_from_the_network(runs, capsys):
    assert main(["report", str(runs / "a"), "--compare", str(runs / "b")]) == 0
    page = (runs / "a" / "report.html").read_text()
    assert str(runs / "a" / "report.html") in capsys.readouterr().out
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert images == ["optimisation", "collapse diagnostics of the embeddings the loss acts on"]
    assert "random init (3 seeds)" in page and "31.0" in page and "10.0 ± 0.4" in page
    assert "compared with b" in page and "&quot;method&quot;: {" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained
    assert "No collapse warning." in page


def test_collapse_warnings_are_marked(runs, tmp_path):
    from jepalab.page import write_report

    run = tmp_path / "collapsed"
    shutil.copytree(runs / "b", run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    rows[2]["collapse_warning"] = "representation collapse at step 2: spread 0.05"
    rows[3]["collapse_recovered"] = "recovered from the collapse warned at step 2"
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(run).read_text()
    assert 'class="warn">collapse warning at step 2: representation collapse' in page
    assert f"<p>recovered at step {rows[3]['step']}: recovered from the collapse" in page


def test_a_plan_in_the_run_shows_its_success_table(runs, tmp_path):
    """`jepalab plan`'s default output folder lies in the run: its plan.json rows hold the
    per-category cells and also the settings and episodes (a dict and a list), which are
    not categories (the report failed on them)."""
    from jepalab.page import write_report

    run = tmp_path / "planned"
    shutil.copytree(runs / "b", run)
    (run / "data.json").write_text(json.dumps({"kind": "trajectories", "env": "two-room"}))
    row = {"name": "model / cem", "all": {"success": 0.54, "ci95": [0.404, 0.670],
                                          "episodes": 50},
           "solved_at_start": 5, "plan_ms_median": 8861.4, "plans": 166,
           "settings": {"planner": "cem", "planner_options": {"samples": 400}},
           "episodes_detail": [{"index": 0, "category": "all", "success": True}]}
    (run / "plan-two-room-lewm-cem-l1-repeat").mkdir()
    (run / "plan-two-room-lewm-cem-l1-repeat" / "plan.json").write_text(json.dumps([row]))
    page = write_report(run).read_text()
    assert "plan-two-room-lewm-cem-l1-repeat" in page and "[40, 67]" in page and "8861" in page


def test_report_of_something_else_is_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a jepalab run directory" in capsys.readouterr().err


def test_headless_chromium_renders_it_without_console_errors(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run); it is missing")
        pytest.skip("no chromium here (apt-get install chromium)")
    from jepalab.page import write_report

    page = write_report(runs / "a", [runs / "b"])
    shot = tmp_path / "report.png"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
              "--window-size=1200,1600"]
    shown = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines()
               if "CONSOLE" in line or "Failed to load resource" in line]
    assert not console, console
    assert shown.stdout.count("<img") == 2 and shown.stdout.count("<table") == 1
    snap = subprocess.run(common + [f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert snap.returncode == 0 and shot.stat().st_size > 20_000, snap.stderr[-2000:]
    if os.environ.get("JEPALAB_SCREENSHOT"):  # how the README's picture was made
        shutil.copy(shot, os.environ["JEPALAB_SCREENSHOT"])
