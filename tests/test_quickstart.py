"""The quickstart's JEPA (recipe jepa-quickstart: LeJEPA, 16 px shapes, 400 steps, about 3
minutes on 2 CPU cores) learns the data: its linear probe at least 10 points above a
random-init encoder's (mean of 3 seeds), its RankMe above random init's, no collapse
warning. The world-model half of the quickstart is tested in tests/world/test_lewm.py."""
import warnings

from jepalab.build import load_data
from jepalab.config import load_config
from jepalab.eval.baselines import probe_encoder, probe_random_init
from jepalab.eval.collapse import CollapseWarning
from jepalab.nn.vit import ViTSpec
from jepalab.quickstart import RECIPE
from jepalab.train import train


def test_quickstart_jepa_is_ten_points_over_random_init(tmp_path):
    cfg = load_config(RECIPE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method = train(cfg, tmp_path, show_progress=False)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    data = load_data(cfg)
    learned = probe_encoder(cfg.method_name, method.eval_encoder(), data)
    spec = ViTSpec(cfg.model.arch, cfg.data.image_size, cfg.model.patch_size)
    random = probe_random_init(spec, data, seeds=3)
    assert learned.linear >= random.linear + 0.10, (learned, random)
    assert learned.rankme > random.rankme, (learned, random)
