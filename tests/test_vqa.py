"""`jepalab vqa`: a video run's QA beside its baselines, written to vqa.json; a run that is
not a video encoder's is refused, naming it and what to train."""
import io
import json

import pytest
from rich.console import Console

from jepalab import vqa
from jepalab.cli import main
from jepalab.config import load_config
from jepalab.data import video_qa
from jepalab.errors import RunKindError
from jepalab.train import train
from jepalab.vqa import vqa_run, vqa_table


def test_a_video_run_answers_beside_random_init_and_the_question_only_model(tmp_path,
                                                                           monkeypatch):
    cfg = load_config("vjepa-moving-shapes", [
        "data.image_size=16", "data.frames=6", "model.patch_size=4", "train.steps=2",
        "method.predictor_depth=1", "method.predictor_width=32", "train.batch_size=8",
        "data.num_train=64", "train.monitor_every=0", f"train.run_dir={tmp_path}"])
    train(cfg, tmp_path, show_progress=False)
    small = {"train": 150, "val": 60, "test": 60}
    monkeypatch.setattr(vqa, "load_video_qa",
                        lambda **kw: video_qa.load_video_qa(**kw, sizes=small))
    result = vqa_run(tmp_path, seeds=1, show_progress=False, epochs=1, lrs=(1e-3,))
    assert json.loads((tmp_path / "vqa.json").read_text()) == result
    assert [row["name"] for row in result["rows"]] == ["vjepa", "random init", "question only"]
    assert (result["frames"], result["image_size"]) == (6, 16)
    for row in result["rows"]:
        assert 0 <= row["overall"] <= 1 and set(row["per_type"]) == set(video_qa.TYPES)
    assert set(result["prior"]) == set(video_qa.TYPES) and 0 < result["prior_overall"] < 0.5


def test_an_image_run_is_refused_with_what_would_do(tmp_path, capsys):
    cfg = load_config("ijepa-shapes")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    with pytest.raises(RunKindError, match="images run.*vjepa-moving-shapes"):
        vqa_run(tmp_path)
    assert main(["vqa", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "vqa needs a video encoder's run" in err and "Traceback" not in err


def test_the_table_has_a_column_per_question_type():
    types = ["descriptive", "counting"]
    row = {"name": "random init", "overall": 0.5, "per_type": {"descriptive": 0.4,
           "counting": 0.6}, "seeds": 2, "overall_std": 0.01,
           "per_type_std": {"descriptive": 0.02, "counting": 0.03}}
    result = {"arch": "vit_nano", "steps": 50, "frames": 8, "image_size": 32,
              "train_questions": 10, "test_questions": 5, "types": types,
              "prior": {"descriptive": 0.2, "counting": 0.25}, "prior_overall": 0.22,
              "rows": [row]}
    table = vqa_table(result)
    assert [c.header for c in table.columns] == ["model", "overall", *types]
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    lines = console.file.getvalue().splitlines()
    assert any("random init (2 seeds)" in line and "50.0 ± 1.0" in line and "60.0 ± 3.0" in line
               for line in lines)
    assert any("answer prior" in line and "22.0" in line and "25.0" in line for line in lines)
