"""Fuzzing the command line and the config loader: a few hundred malformed command lines,
override values and recipe files. Each must end in a clear error (exit 2, one line naming
what is wrong) or, when it happens to be valid, reach the work it asks for; never a
traceback, never a file written outside the run folder.

The work itself (training, probing, planning, collecting, benchmarking) is replaced by a
stand-in that stops at its door: what is fuzzed is everything before it.
"""
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jepalab import cli
from jepalab.config import SECTIONS, recipe_names

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


class ReachedTheWork(BaseException):  # passes the CLI's own handlers
    """The input was valid: the command got as far as the work it asks for."""


def _stop(*args, **kwargs):
    raise ReachedTheWork


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The CLI in an empty working directory with every verb's work stubbed out."""
    import jepalab.bench
    import jepalab.envs.collect
    import jepalab.probe
    import jepalab.quickstart
    import jepalab.train
    import jepalab.world.evaluate

    for module, name in [(jepalab.train, "train"), (jepalab.bench, "run_bench"),
                         (jepalab.probe, "probe_run"), (jepalab.quickstart, "quickstart"),
                         (jepalab.envs.collect, "EpisodeWriter"),
                         (jepalab.world.evaluate, "evaluate")]:
        monkeypatch.setattr(module, name, _stop)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def outcome(argv, capsys, root):
    """Run the CLI; return 'work' or the error line; fail on a traceback or a stray file."""
    before = set(root.rglob("*"))
    try:
        code = cli.main(argv)
    except ReachedTheWork:
        return "work"
    except SystemExit as e:  # argparse's own refusal: exit 2 with its usage line
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bug in jepalab" not in err, (argv, err)
    assert code == 2, (argv, code, err)
    assert "error" in err, (argv, err)
    stray = {p for p in set(root.rglob("*")) - before if "runs" not in p.parts}
    assert not stray, (argv, stray)
    return err


KEYS = [f"{section}.{f}" for section, cls in SECTIONS.items()
        for f in cls.__dataclass_fields__] + [
    "method.lam", "method.ema_start", "method.num_targets", "method.target_scale",
    "method.local_views", "method.name", "method.predictor_depth", "train.stpes", "model",
    "optim.lr.x", ".steps", "train.", "data.name", "method.nonsense"]
WORDS = st.sampled_from(["0", "-1", "1e400", "-1e400", "nan", ".inf", "1.5", "[]", "[1]",
                         "[0.1, 0.2, 0.3]", "{a: 1}", "yes", "null", "", "~", "'", "[",
                         "ijepa", "cuda:9", "mps", "auto", "imagefolder:/no/such",
                         "cifar:/no/such", "videofolder:", "npyvideo:x.npy", "shapes",
                         "trajectories:none.h5", "2**70", "99999999999999999999999",
                         "vit_giant", "\u00e9\u00e8", "\x00"])
VALUES = st.one_of(WORDS, st.integers(-10**20, 10**20).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(string.printable, max_size=12))


@FUZZ
@given(recipe=st.sampled_from(recipe_names()),
       overrides=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_train_overrides(sandbox, capsys, recipe, overrides):
    outcome(["train", recipe, "--quiet", *[f"{k}={v}" for k, v in overrides]], capsys,
            sandbox)


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
              st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
SECTION = st.dictionaries(st.sampled_from([k.split(".")[-1] for k in KEYS] + ["name"]),
                          YAML_VALUES, max_size=4)
RECIPE = st.one_of(
    st.dictionaries(st.sampled_from(["method", "model", "data", "optim", "train", "recipe",
                                     "extra"]), st.one_of(SECTION, YAML_VALUES), max_size=5),
    YAML_VALUES)


@FUZZ
@given(recipe=RECIPE)
def test_recipe_files(sandbox, capsys, recipe):
    path = sandbox / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    outcome(["train", str(path), "--quiet"], capsys, sandbox)
    path.unlink()


@FUZZ
@given(text=st.text(max_size=60))
def test_recipe_files_that_are_not_yaml(sandbox, capsys, text):
    path = sandbox / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome(["train", str(path), "--quiet"], capsys, sandbox)
    path.unlink()


FLAGS = {
    "bench": ["--methods", "--variant", "--data", "--budget", "--budgets", "--batch-size",
              "--seed", "--arch", "--image-size", "--patch-size", "--precision"],
    "collect": ["--episodes", "--policy", "--size", "--steps", "--noise", "--speed", "--seed"],
    "plan": ["--model", "--episodes", "--planner", "--cost", "--horizon", "--execute",
             "--seed", "--gif", "--protocol", "--expert-data", "--goal-offset", "--budget",
             "--action-block", "--planner-option"],
    "probe": ["--seeds", "--ceiling", "--attentive"],
    "export": ["--format", "--out"],
    "report": ["--compare", "--out"],
}
POSITIONAL = {"bench": [], "collect": ["two-room", "pusht", "nowhere", ""],
              "plan": ["two-room", "reacher", "mars"], "probe": ["runs/none", ".", "", "x"],
              "export": ["runs/none", ".", ""], "report": ["runs/none", ".", ""]}


@FUZZ
@given(data=st.data(), verb=st.sampled_from(sorted(FLAGS)))
def test_verb_flags(sandbox, capsys, data, verb):
    argv = [verb]
    if POSITIONAL[verb]:
        argv.append(data.draw(st.sampled_from(POSITIONAL[verb])))
    for flag in data.draw(st.lists(st.sampled_from(FLAGS[verb]), max_size=3)):
        argv += [flag, data.draw(VALUES)]
    if verb == "plan" and "--model" not in argv:
        argv += ["--model", "runs/none"]
    outcome(argv + ["--quiet"], capsys, sandbox)


FILES = st.lists(st.tuples(
    st.sampled_from(["a", "b", "c", ".hidden"]),                     # class folder
    st.sampled_from(["x.png", "y.jpg", "z.gif", "w.bmp", "n.txt", "q.PNG"]),
    st.one_of(st.binary(max_size=64),                                 # junk bytes
              st.tuples(st.sampled_from(["RGB", "L", "RGBA", "P", "I;16", "1", "CMYK"]),
                        st.integers(1, 12), st.integers(1, 12)))),    # a real image
    max_size=8)


@FUZZ
@given(files=FILES, skip=st.booleans(), empty=st.sampled_from(["", "a", "d"]))
def test_image_folders(sandbox, files, skip, empty):
    """A folder of broken, odd and empty things loads or is refused naming what is wrong."""
    import shutil

    import numpy as np
    from PIL import Image

    from jepalab.config import DataConfig
    from jepalab.data import catalog
    from jepalab.errors import UserError

    root = sandbox / "pics"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    if empty:
        (root / empty).mkdir(exist_ok=True)
    for folder, name, content in files:
        (root / folder).mkdir(exist_ok=True)
        if isinstance(content, bytes):
            (root / folder / name).write_bytes(content)
            continue
        mode, w, h = content
        pixels = np.random.default_rng(w * h).integers(0, 255, (h, w))
        if mode == "I;16":  # 16-bit grey: PNG holds it
            Image.fromarray((pixels * 257).astype(np.uint16)).save(root / folder / "deep.png")
            continue
        image = Image.fromarray(pixels.astype(np.uint8)).convert(mode)
        suffix = ".jpg" if mode == "CMYK" else ".png"
        image.save((root / folder / name).with_suffix(suffix))
    try:
        data = catalog.load(DataConfig(f"imagefolder:{root}", 8,
                                       on_bad_file="skip" if skip else "stop"))
    except UserError as e:
        assert str(root) in str(e) or "imagefolder" in str(e), e
        return
    assert len(data.train) >= 1 and data.train.images.shape[1:] == (3, 8, 8)
