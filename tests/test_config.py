"""Presets, typed overrides, validation and the JSON round trip of the run configuration."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from magajax import config as cfg

ROOT = Path(__file__).resolve().parents[1]


def test_presets_match_the_design_table():
    blog, cartan, quick = cfg.preset("blog"), cfg.preset("cartan"), cfg.preset("quick")
    assert (blog.train.beta_kl, blog.train.beta_lat, blog.train.lr, blog.train.batch_size) == (2, 300, 5e-4, 64)
    assert (cartan.train.beta_kl, cartan.train.beta_lat, cartan.train.lr, cartan.train.clip,
            cartan.train.batch_size) == (300, 300, 1e-3, 1.0, 128)
    assert (quick.train.beta_kl, quick.train.beta_lat, quick.train.lr, quick.train.batch_size) == (2, 300, 1e-3, 32)
    assert (blog.model.levels, blog.model.steps, blog.model.hidden, blog.model.coupling) == (3, 3, 128, "additive")


def test_defaults_keep_magajax_choices():
    m, t = cfg.ModelConfig(), cfg.TrainConfig()
    assert (m.input, m.invconv, m.coupling_net, m.init, t.kl, t.latent) == ("logit", "lu", "bias", "default", "code",
                                                                            "mean")
    assert cfg.preset("quick").train.latent == "mean"


def test_blog_preset_reencodes_with_fresh_samples():
    assert cfg.preset("blog").train.latent == "sampled"


def test_cartan_preset_is_the_official_setup():
    c = cfg.preset("cartan")
    assert (c.data.pairs, c.data.split, c.data.pivot) == ("shuffle", "element-cartan", 594448)
    assert (c.model.encoder_padding, c.model.input, c.model.invconv, c.model.coupling_net, c.model.init) == (
        "VALID", "raw", "plain", "actnorm", "xavier")
    assert (c.train.kl, c.train.latent) == ("varying", "self")
    assert cfg.Config.from_dict(c.to_dict()) == c


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="known presets: blog, cartan, quick"):
        cfg.preset("fast")


def test_override_replaces_typed_values_by_section_or_unique_name():
    c = cfg.override(cfg.preset("blog"), {"hidden": 32, "train.lr": 1e-3, "split": "range",
                                         "encoder_padding": "VALID", "beta_kl": 4})
    assert c.model.hidden == 32 and c.train.lr == 1e-3 and c.data.split == "range"
    assert c.model.encoder_padding == "VALID" and c.train.beta_kl == 4.0 and isinstance(c.train.beta_kl, float)
    assert cfg.preset("blog").model.hidden == 128  # presets are not mutated


def test_override_does_not_parse_strings():
    with pytest.raises(ValueError, match=r"^model.hidden must be a positive integer, got '32'$"):
        cfg.override(cfg.preset("blog"), {"hidden": "32"})


def test_override_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="unknown config field 'hiden'"):
        cfg.override(cfg.preset("blog"), {"hiden": 3})


def test_ambiguous_field_names_the_candidates():
    with pytest.raises(ValueError, match=r"ambiguous config field 'steps': write one of model.steps, train.steps"):
        cfg.override(cfg.preset("blog"), {"steps": 3})


def test_json_round_trip():
    c = cfg.override(cfg.preset("quick"), {"split": "shape=ellipse & x>=16", "kind": "vae", "encoder_padding": "VALID"})
    assert cfg.Config.from_dict(c.to_dict()) == c


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown config fields model.hiden, model.width"):
        cfg.Config.from_dict({"model": {"hiden": 3, "width": 2}})
    with pytest.raises(ValueError, match="unknown config keys optimizer"):
        cfg.Config.from_dict({"optimizer": {}})


def test_from_dict_validates_values():
    with pytest.raises(ValueError, match=r"^train.steps must be a positive integer, got 0$"):
        cfg.Config.from_dict({"train": {"steps": 0}})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size": 0}, "train.batch_size must be a positive integer, got 0"),
        ({"batch_size": -3}, "train.batch_size must be a positive integer, got -3"),
        ({"batch_size": 2.0}, "train.batch_size must be a positive integer, got 2.0"),
        ({"batch_size": True}, "train.batch_size must be a positive integer, got True"),
        ({"train.steps": 0}, "train.steps must be a positive integer, got 0"),
        ({"log_every": 0}, "train.log_every must be a positive integer, got 0"),
        ({"checkpoint_every": 0}, "train.checkpoint_every must be a positive integer, got 0"),
        ({"keep": 0}, "train.keep must be a positive integer, got 0"),
        ({"seed": "1"}, "train.seed must be an integer, got '1'"),
        ({"lr": 0.0}, "train.lr must be a finite number > 0, got 0.0"),
        ({"lr": math.inf}, "train.lr must be a finite number > 0, got inf"),
        ({"lr": "abc"}, "train.lr must be a finite number > 0, got 'abc'"),
        ({"clip": -1.0}, "train.clip must be a finite number >= 0, got -1.0"),
        ({"beta_kl": -1}, "train.beta_kl must be a finite number >= 0, got -1"),
        ({"beta_lat": math.nan}, "train.beta_lat must be a finite number >= 0, got nan"),
        ({"latent_dim": 0}, "model.latent_dim must be a positive integer, got 0"),
        ({"levels": 0}, "model.levels must be a positive integer, got 0"),
        ({"model.steps": 0}, "model.steps must be a positive integer, got 0"),
        ({"hidden": "abc"}, "model.hidden must be a positive integer, got 'abc'"),
        ({"image_size": 0}, "model.image_size must be a positive integer, got 0"),
        ({"image_size": 60}, "model.image_size must be divisible by 2\\*\\*model.levels = 8, got 60"),
        ({"eps": 0.0}, "model.eps must be a number in \\(0, 0.5\\), got 0.0"),
        ({"eps": 0.5}, "model.eps must be a number in \\(0, 0.5\\), got 0.5"),
        ({"kind": "gan"}, "model.kind must be one of maganet, vae, got 'gan'"),
        ({"coupling": "spline"}, "model.coupling must be one of additive, affine, got 'spline'"),
        ({"dtype": "float16"}, "model.dtype must be one of float32, bfloat16, got 'float16'"),
        ({"encoder_padding": 4}, "model.encoder_padding must be an integer in 0..3 or 'VALID', got 4"),
        ({"encoder_padding": "SAME"}, "model.encoder_padding must be an integer in 0..3 or 'VALID', got 'SAME'"),
        ({"pairs": "all"}, "data.pairs must be one of pivot, shuffle, got 'all'"),
        ({"pivot": 737280}, "data.pivot must be a dSprites index in \\[0, 737280\\), got 737280"),
        ({"pivot": -1}, "data.pivot must be a dSprites index in \\[0, 737280\\), got -1"),
        ({"source": "disk"}, "data.source must be one of auto, tfds, render or file:PATH, got 'disk'"),
        ({"source": "file:"}, "data.source must be one of auto, tfds, render or file:PATH, got 'file:'"),
        ({"split": " "}, "data.split must be a split name or expression, got ' '"),
        ({"input": "bits"}, "model.input must be one of logit, raw, got 'bits'"),
        ({"invconv": "qr"}, "model.invconv must be one of lu, plain, got 'qr'"),
        ({"coupling_net": "batchnorm"}, "model.coupling_net must be one of bias, actnorm, got 'batchnorm'"),
        ({"init": "he"}, "model.init must be one of default, xavier, got 'he'"),
        ({"kl": "pivot"}, "train.kl must be one of code, varying, got 'pivot'"),
        ({"latent": "none"}, "train.latent must be one of mean, sampled, self, got 'none'"),
        ({"steps_per_call": 0}, "train.steps_per_call must be a positive integer, got 0"),
        ({"scan_steps": "yes"}, "model.scan_steps must be true or false, got 'yes'"),
        ({"model.conv": "fft"}, "model.conv must be one of auto, matmul, lax, got 'fft'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        cfg.override(cfg.preset("blog"), changes)


def test_edge_values_are_accepted():
    c = cfg.override(cfg.preset("blog"), {"pivot": 0, "clip": 0, "beta_kl": 0, "eps": 0.499, "encoder_padding": 0,
                                         "image_size": 8, "source": "file:/data/dsprites.npz"})
    assert (c.data.pivot, c.train.clip, c.model.image_size, c.data.source) == (0, 0.0, 8, "file:/data/dsprites.npz")
    assert cfg.override(c, {"encoder_padding": 3}).model.encoder_padding == 3


def test_sections_are_validated_when_built_directly():
    with pytest.raises(ValueError, match=r"^train.batch_size must be a positive integer, got 0$"):
        cfg.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"^preset must be one of blog, cartan, quick, got 'fast'$"):
        cfg.Config(preset="fast")


def test_config_import_does_not_import_jax():
    code = "import sys; from magajax import config; import magajax; magajax.Config; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
