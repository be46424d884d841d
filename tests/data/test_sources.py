"""dSprites sources on small files in the official layouts; the network is blocked throughout.

The tfds tests use the real `dsprites` builder with a small hdf5 in the official layout. As the
library checks the file's sha256 against `builder.url_infos`, the fixture registers the small
file's own checksum in the builder's url_infos; one test keeps the real checksum to see the
mismatch caught. The prepared-dataset test runs tfds' `download_and_prepare` into an array_record
dataset, PNG-encoding images with PIL instead of TensorFlow (a fixture-only patch).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import zipfile

import h5py
import numpy as np
import pytest

from magajax.config import DEFAULT_PIVOT
from magajax.data import factors, render, sources

tfds = pytest.importorskip("tensorflow_datasets")
from tensorflow_datasets.datasets.dsprites import dsprites_dataset_builder  # noqa: E402

HDF5 = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
RENDER = render.render_dsprites  # the real renderer, for expected images even where it is counted


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Connections and tfds downloads fail at once, so a mistake fails instead of hanging."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    def no_download(self, *args, **kwargs):
        raise AssertionError("a test reached tfds' download manager")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", no_download)


def _indices(n: int = 120, seed: int = 0) -> np.ndarray:
    """`n` distinct dataset indices including the default pivot, shuffled."""
    rng = np.random.default_rng(seed)
    idx = np.unique(np.append(rng.choice(factors.NUM_IMAGES, n - 1, replace=False), DEFAULT_PIVOT))
    return rng.permutation(idx)


def _write_official(path, indices: np.ndarray) -> None:
    """Writes `indices`' images in the official .npz or .hdf5 layout (color column first)."""
    classes = np.concatenate([np.zeros((len(indices), 1), np.int64), factors.index_to_classes(indices)], 1)
    values = np.concatenate([np.ones((len(indices), 1)), factors.classes_to_values(classes[:, 1:])], 1)
    imgs = RENDER(indices)
    if str(path).endswith(".npz"):
        np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=values.astype(np.float64))
    else:
        with h5py.File(path, "w") as h:
            h["imgs"], h["latents/classes"], h["latents/values"] = imgs, classes, values


def _check(ds: sources.DSprites, indices: np.ndarray) -> None:
    """`ds` holds exactly `indices`, sorted, with the right images, classes and values."""
    want = np.sort(indices)
    np.testing.assert_array_equal(factors.classes_to_index(ds.classes), want)
    np.testing.assert_array_equal(ds.unpacked(slice(None)), RENDER(want))
    np.testing.assert_allclose(ds.values, factors.classes_to_values(ds.classes), rtol=1e-6)
    assert ds.images.shape == (len(want), 64, 8) and ds.classes.dtype == np.uint8 and len(ds) == len(want)


@pytest.mark.parametrize("ext", ["npz", "hdf5"])
def test_official_file_reorders_rows(tmp_path, ext):
    indices = _indices()
    path = tmp_path / f"dsprites.{ext}"
    _write_official(path, indices)
    ds = sources.load_dsprites(f"file:{path}")
    _check(ds, indices)
    assert ds.source == f"file:{path}"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz does not exist"):
        sources.load_dsprites(f"file:{tmp_path / 'nope.npz'}")


@pytest.mark.parametrize("ext", ["npz", "hdf5"])
def test_truncated_file(tmp_path, ext):
    path = tmp_path / f"dsprites.{ext}"
    _write_official(path, _indices())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"{path.name}: .*truncated"):
        sources.load_dsprites(f"file:{path}")


def test_npz_that_is_not_a_zip(tmp_path):
    """numpy would suggest allow_pickle for such a file; the error names the file and never pickle."""
    path = tmp_path / "dsprites.npz"
    np.save(tmp_path / "x.npy", np.zeros(3))
    path.write_bytes(b"\x80\x04K\x01." + (tmp_path / "x.npy").read_bytes())
    with pytest.raises(ValueError, match=r"dsprites.npz: not a zip archive") as info:
        sources.load_dsprites(f"file:{path}")
    assert "pickle" not in str(info.value)


def test_truncated_npz_member(tmp_path):
    """A valid zip whose imgs.npy has fewer images than its header says."""
    path = tmp_path / "dsprites.npz"
    _write_official(path, _indices())
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data[:-4096] if name == "imgs.npy" else data)
    with pytest.raises(ValueError, match="imgs ends within image 119 of 120"):
        sources.load_dsprites(f"file:{path}")


@pytest.mark.parametrize("ext", ["npz", "hdf5"])
@pytest.mark.parametrize("what, match", [("imgs", r"imgs has shape \(5, 32, 32\), expected \(N, 64, 64\)"),
                                         ("classes", r"latent classes have shape \(5, 5\), expected \(5, 6\)")])
def test_wrong_shape(tmp_path, ext, what, match):
    path = tmp_path / f"bad.{ext}"
    imgs = np.zeros((5, 32, 32) if what == "imgs" else (5, 64, 64), np.uint8)
    classes = np.zeros((5, 5 if what == "classes" else 6), np.int64)
    if ext == "npz":
        np.savez(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))
    else:
        with h5py.File(path, "w") as h:
            h["imgs"], h["latents/classes"], h["latents/values"] = imgs, classes, classes.astype(float)
    with pytest.raises(ValueError, match=rf"{path.name}: {match}"):
        sources.load_dsprites(f"file:{path}")


def test_unknown_source():
    with pytest.raises(ValueError, match="valid sources: auto, tfds, render, file:PATH"):
        sources.load_dsprites("kaggle")


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """A small official hdf5, registered in the dsprites builder's url_infos with its own sha256."""
    indices = _indices(60, seed=1)
    path = tmp_path / "src" / HDF5
    path.parent.mkdir()
    _write_official(path, indices)
    (url, _info), = tfds.builder("dsprites").url_infos.items()
    small = tfds.download.checksums.UrlInfo(size=path.stat().st_size, filename=HDF5,
                                            checksum=hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(dsprites_dataset_builder.Builder, "url_infos", property(lambda self: {url: small}))
    return path, indices, url, small


@pytest.mark.parametrize("where", ["dataset", "legacy", "manual"])
def test_tfds_reads_its_download(registered, tmp_path, capsys, where):
    """The file where tfds keeps downloads (its download name; an .INFO beside it is tfds' business)."""
    path, indices, url, info = registered
    dl_name = tfds.download.resource.get_dl_fname(url, info.checksum)
    rel = {"dataset": f"dsprites/{dl_name}", "legacy": dl_name, "manual": f"manual/{HDF5}"}[where]
    target = tmp_path / "tfds" / "downloads" / rel
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())
    ds = sources.load_dsprites("auto", data_dir=str(tmp_path / "tfds"))
    _check(ds, indices)
    assert ds.source == f"tfds:{target}"
    assert capsys.readouterr().out.count("dSprites: tfds") == 1


def test_tfds_download_checksum_mismatch(tmp_path):
    """Without the fixture's registration the small file fails the real registered sha256."""
    (url, info), = tfds.builder("dsprites").url_infos.items()
    target = tmp_path / "downloads" / "dsprites" / tfds.download.resource.get_dl_fname(url, info.checksum)
    target.parent.mkdir(parents=True)
    _write_official(target, _indices(10))
    with pytest.raises(ValueError, match=f"sha256 .* is not the {info.checksum}"):
        sources.load_dsprites("tfds", data_dir=str(tmp_path))


def test_tfds_fetches_when_reachable(registered, tmp_path, monkeypatch, capsys):
    """With the host reachable the file comes through tfds' DownloadManager (faked here)."""
    path, indices, url, _ = registered
    monkeypatch.setattr(sources, "_reachable", lambda u: u == url)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", lambda self, u: path if u == url else None)
    _check(sources.load_dsprites("tfds", data_dir=str(tmp_path / "tfds")), indices)
    assert "fetching" in capsys.readouterr().out


def test_tfds_prepared_array_record(registered, tmp_path, monkeypatch):
    """A prepared array_record dataset (rows stored shuffled) is read and put in index order."""
    from PIL import Image

    path, indices, url, _ = registered
    monkeypatch.setattr(tfds.download.DownloadManager, "download", lambda self, u: path if u == url else None)
    encode = tfds.features.Image.encode_example

    def encode_with_pil(self, image):
        buf = io.BytesIO()
        Image.fromarray(image[..., 0]).save(buf, format="png")
        return encode(self, io.BytesIO(buf.getvalue()))

    monkeypatch.setattr(tfds.features.Image, "encode_example", encode_with_pil)
    data_dir = tmp_path / "tfds"
    config = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    builder = tfds.builder("dsprites", data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=config)
    assert not list((data_dir / "downloads").rglob(HDF5))  # so the prepared dataset is what is read
    ds = sources.load_dsprites("tfds", data_dir=str(data_dir))
    _check(ds, indices)
    assert ds.source == f"tfds:{builder.data_dir}"


def test_tfds_unavailable_offline(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match=r"no download of .* no prepared dataset .* github\.com is unreachable"):
        sources.load_dsprites("tfds", data_dir=str(tmp_path))
    # the error says it once; tfds' own warning about the unprepared folder is not shown as well
    assert not [r for r in caplog.records if "dataset_info.json" in r.getMessage()]


@pytest.fixture
def tiny_render(monkeypatch):
    """The first 300 images stand in for the full set; renderer calls are counted."""
    monkeypatch.setattr(factors, "NUM_IMAGES", 300)
    calls = []
    def counted(indices, packed=False):
        calls.append(len(indices))
        return RENDER(indices, packed)

    monkeypatch.setattr(render, "render_dsprites", counted)
    return calls


def test_auto_offline_renders_and_caches(tiny_render, tmp_path, capsys):
    start = time.perf_counter()
    first = sources.load_dsprites("auto", cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "tfds"))
    assert time.perf_counter() - start < 10
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "offline renderer" in out and "unreachable" in out
    assert sum(tiny_render) == 300 and first.source.startswith("render:")
    _check(first, np.arange(300))
    second = sources.load_dsprites("render", cache_dir=str(tmp_path / "cache"))
    assert sum(tiny_render) == 300  # not rendered again
    np.testing.assert_array_equal(second.images, first.images)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [os.path.basename(first.source)]


def test_corrupt_render_cache_is_rendered_again(tiny_render, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAGAJAX_CACHE", str(tmp_path))
    first = sources.load_dsprites("render")
    cache = first.source.removeprefix("render:")
    with open(cache, "r+b") as f:
        f.truncate(os.path.getsize(cache) - 100)
    capsys.readouterr()
    again = sources.load_dsprites("render")
    assert "is corrupt" in capsys.readouterr().out and sum(tiny_render) == 600
    np.testing.assert_array_equal(again.images, first.images)
    sources.load_dsprites("render")
    assert sum(tiny_render) == 600
