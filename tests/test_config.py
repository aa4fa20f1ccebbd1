import pytest

from jepalab.config import ConfigError, load_config, recipe_names


def test_every_recipe_loads_and_validates():
    for name in recipe_names():
        cfg = load_config(name)
        assert cfg.recipe == name and cfg.train.steps > 0


def test_overrides_are_typed():
    cfg = load_config("ijepa-shapes", ["train.steps=7", "optim.lr=0.002", "method.loss=l2",
                                       "method.target_scale=[0.1, 0.2]", "train.tensorboard=true"])
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.optim.lr == 0.002 and cfg.method.loss == "l2"
    assert cfg.method.target_scale == (0.1, 0.2) and cfg.train.tensorboard is True


def test_int_given_where_float_expected_is_accepted():
    assert load_config("ijepa-shapes", ["optim.lr=1"]).optim.lr == 1.0


def test_exponent_without_dot_is_a_float():  # YAML 1.1 would leave "3e-3" a string
    assert load_config("ijepa-shapes", ["optim.lr=3e-3"]).optim.lr == 0.003


@pytest.mark.parametrize("override, words", [
    ("train.stpes=5", ["train.stpes", "did you mean 'steps'"]),
    ("trian.steps=5", ["'trian'", "did you mean 'train'"]),
    ("method.predictor_dept=3", ["method.predictor_dept", "predictor_depth"]),
    ("train.steps=five", ["train.steps", "'five'", "int"]),
    ("train.steps=-3", ["train.steps", "> 0", "-3"]),
    ("train.steps=2.5", ["train.steps", "2.5"]),
    ("model.arch=vit_tiniest", ["model.arch", "vit_tiniest", "did you mean 'vit_tiny'"]),
    ("method.loss=l3", ["method.loss", "'l3'", "smooth_l1"]),
    ("method.name=ijepaa", ["method.name", "ijepaa", "did you mean 'ijepa'"]),
    ("data.name=shape", ["data.name", "'shape'", "did you mean 'shapes'"]),
    ("data.image_size=30", ["data.image_size", "30", "model.patch_size"]),
    ("train.precision=fp64", ["train.precision", "fp64", "bf16"]),
    ("method.target_scale=0.2", ["method.target_scale", "list of 2 numbers"]),
    ("train.tensorboard=maybe", ["train.tensorboard", "bool"]),
    ("steps=5", ["section.key=value"]),
])
def test_bad_config_names_key_and_value(override, words):
    with pytest.raises(ConfigError) as error:
        load_config("ijepa-shapes", [override])
    message = str(error.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_unknown_recipe_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'ijepa-shapes'"):
        load_config("ijepa-shape")


def test_recipe_file_with_bad_key_names_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("method: {name: ijepa}\ntrain: {steps: 10, bach_size: 4}\n")
    with pytest.raises(ConfigError, match="train.bach_size.*batch_size"):
        load_config(str(path))
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
