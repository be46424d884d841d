"""The `python -m experiments.train` flags."""

import pytest

from experiments import train as cli


def test_flags_build_the_config():
    args, config = cli.parse(["--split=range", "--model=vae", "--preset=quick", "--steps=7", "--batch-size=16",
                              "--pairs=shuffle", "--beta-kl=4", "--model.steps=2", "--data=render"])
    assert (config.data.split, config.model.kind, config.preset, config.train.steps) == ("range", "vae", "quick", 7)
    assert (config.train.batch_size, config.data.pairs, config.train.beta_kl) == (16, "shuffle", 4.0)
    assert (config.model.steps, config.data.source, args.workdir) == (2, "render", None)


def test_unknown_field_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse(["--hiden=3"])
    assert e.value.code == 2 and "unknown config field 'hiden'" in capsys.readouterr().err
