"""`python -m experiments.data`: prints the split and writes its figure."""

import pytest
from PIL import Image

from experiments import data as entry
from magajax.data import sources


def test_writes_the_figure(small_dsprites, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small_dsprites)
    out = tmp_path / "figs" / "element.png"
    assert entry.main(["--split=element", f"--out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("split 'element': ") and lines[1].startswith("pivot 594095 (row ")
    assert lines[-1] == f"wrote {out}"
    with Image.open(out) as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("argv, message", [(["--pivot=737280"], "--pivot: data.pivot"),
                                           (["--data=disk"], "--data: data.source"),
                                           (["--split=shape=cube"], "malformed split expression")])
def test_bad_flags_stop_before_loading(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sources, "load_dsprites", lambda source: pytest.fail("data loaded"))
    with pytest.raises(SystemExit) as e:
        entry.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err, err
