"""configs/study/views.yaml (issue 23.3): the former demo recipe with Lite0's views and towers side by
side (the averaged views are not run: on ../shared/data's square copies the views coincide; the config
says why). Loaded and validated only; the study itself embeds ~10,000 images per setting."""
from __future__ import annotations

from littune.config.experiment import validate
from littune.study.config import load_study_config


def test_the_views_study_compares_what_it_says():
    study = load_study_config("configs/study/views.yaml")
    assert set(study.evals) == {"dev", "flowers_train"}  # Flickr8k dev retrieval, flowers/train zero-shot
    images = {}
    for name in study.settings:
        cfg = study.experiment(name)
        validate(cfg)
        images[name] = cfg.model.image
        assert cfg.data.dev is None and cfg.train.steps == 300  # tuning splits only, equal training
        assert (cfg.model.image.lock, cfg.model.text.lock, cfg.data.use_text_cache) == ("L", "L", True)  # the demo's
    views = {k: (i.tower_name(), i.crop_pct, i.resize_mode, tuple(i.averaged_views)) for k, i in images.items()}
    assert views == {
        "centre_square": ("efficientnet_lite0", 1.0, None, ()),  # lite0's own shortest, at crop 1.0
        "squash": ("efficientnet_lite0", 1.0, "squash", ()),
        "border": ("efficientnet_lite0", 1.0, "border", ()),
        "lite0_lite2": ("concat_l2(efficientnet_lite0,efficientnet_lite2)", 1.0, None, ()),
    }
    assert [(m.name, m.crop_pct) for m in images["lite0_lite2"].members()] == [
        ("efficientnet_lite0", 1.0), ("efficientnet_lite2", 1.0)]  # both see the centre square, each at its size
