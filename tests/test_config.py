"""Presets, overrides and the JSON round trip of the run configuration."""

import pytest

from magajax import config as cfg


def test_presets_match_the_design_table():
    blog, cartan, quick = cfg.preset("blog"), cfg.preset("cartan"), cfg.preset("quick")
    assert (blog.train.beta_kl, blog.train.beta_lat, blog.train.lr, blog.train.batch_size) == (2, 300, 5e-4, 64)
    assert (cartan.train.beta_kl, cartan.train.beta_lat, cartan.train.lr, cartan.train.clip,
            cartan.train.batch_size) == (300, 300, 1e-3, 1.0, 128)
    assert (quick.train.beta_kl, quick.train.beta_lat, quick.train.lr, quick.train.batch_size) == (2, 300, 1e-3, 32)
    assert (blog.model.levels, blog.model.steps, blog.model.hidden, blog.model.coupling) == (3, 3, 128, "additive")


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="known presets: blog, cartan, quick"):
        cfg.preset("fast")


def test_override_parses_types_and_sections():
    c = cfg.override(cfg.preset("blog"), {"hidden": "32", "train.lr": "1e-3", "split": "range",
                                         "encoder_padding": "VALID", "beta-kl": 4})
    assert c.model.hidden == 32 and c.train.lr == 1e-3 and c.data.split == "range"
    assert c.model.encoder_padding == "VALID" and c.train.beta_kl == 4
    assert cfg.preset("blog").model.hidden == 128  # presets are not mutated


def test_override_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="unknown config field 'hiden'"):
        cfg.override(cfg.preset("blog"), {"hiden": "3"})


def test_json_round_trip():
    c = cfg.override(cfg.preset("quick"), {"split": "shape=ellipse & x>=16", "kind": "vae"})
    assert cfg.Config.from_dict(c.to_dict()) == c


def test_ambiguous_field_names_the_candidates():
    with pytest.raises(ValueError, match="ambiguous config field 'steps': write one of model.steps, train.steps"):
        cfg.override(cfg.preset("blog"), {"steps": "3"})


def test_from_flags_applies_extra_and_named_flags():
    c = cfg.from_flags("quick", ["--hidden=16", "--train.lr=0.01"], {"data.split": "range", "train.seed": None})
    assert (c.model.hidden, c.train.lr, c.data.split, c.train.seed) == (16, 0.01, "range", 0)
    with pytest.raises(ValueError, match="config overrides take the form --FIELD=VALUE"):
        cfg.from_flags("quick", ["--hidden", "16"], {})
