"""dSprites loaders: tfds, the official file, or the offline renderer → one `DSprites` container.

Sources (`load_dsprites(source)`):

- `tfds`: tensorflow-datasets' `dsprites` builder, TensorFlow optional. Tried in this order:
  1. the builder's registered file (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5, sha256 from
     `builder.url_infos`) where tfds keeps its downloads (<data_dir>/downloads/dsprites/…,
     <data_dir>/downloads/…, or the manual dir <data_dir>/downloads/manual/<file name>),
     checked against its sha256 and read with h5py. It holds the same images as a prepared
     dataset and reads in seconds, where decoding 737,280 PNG records takes minutes;
  2. a prepared dataset in the TFDS data dir: array_record through `tfds.data_source`, tfrecord
     through `tfds.load` where TensorFlow is importable. Its rows are stored shuffled;
  3. the registered file fetched by tfds' download manager, only if the file's host accepts a
     TCP connection within 2 s, so an offline machine moves on at once (tfds itself would retry
     for minutes).
- `file:PATH`: the official .npz (imgs, latents_classes, latents_values) or .hdf5 (imgs,
  latents/classes, latents/values), read in chunks.
- `render`: the offline renderer (magajax.data.render); the packed set is cached as an .npy file
  in $MAGAJAX_CACHE (default ~/.cache/magajax), keyed by the renderer's source code.
- `auto`: tfds if any of its three routes is available, else render.

Rows are always in dataset-index order (the official file's), and any subset of dSprites is
accepted: the classes tell which images the rows are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import os
import socket
import tempfile
import threading
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from magajax.data import factors, render

SOURCES = ("auto", "tfds", "render", "file:PATH")
_CHUNK = 4096  # images read, decoded or rendered at a time (16 MiB unpacked)
_PROBE_TIMEOUT_S = 2.0
_TFDS_NAMES = ("shape", "scale", "orientation", "x_position", "y_position")


@dataclasses.dataclass(frozen=True)
class DSprites:
    """dSprites images and their factors, rows in dataset-index order.

    Attributes:
      images: (N, 64, 8) uint8, each 64-pixel image row bit-packed (np.packbits(axis=-1));
        377 MB for all 737,280 images.
      classes: (N, 5) uint8 factor classes (shape, scale, orientation, x, y).
      values: (N, 5) float32 factor values.
      source: the source and file the images came from.
    """

    images: np.ndarray
    classes: np.ndarray
    values: np.ndarray
    source: str

    def __post_init__(self):
        n = len(self.images)
        if self.images.shape != (n, 64, 8) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, 64, 8) uint8 bit-packed, got {self.images.shape} {self.images.dtype}")
        if self.classes.shape != (n, 5) or self.values.shape != (n, 5):
            raise ValueError(f"classes and values must be ({n}, 5), got {self.classes.shape} and {self.values.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def unpacked(self, rows: np.ndarray | slice) -> np.ndarray:
        """(n, 64, 64) uint8 {0, 1} images of `rows`."""
        return np.unpackbits(self.images[rows], axis=-1)


def _say(line: str) -> None:
    print(f"dSprites: {line}", flush=True)


def _canonical(images: np.ndarray, classes: np.ndarray, values: np.ndarray, source: str) -> DSprites:
    """Sorts rows into dataset-index order (no copy if already sorted); a repeated image is a ValueError."""
    try:
        index = factors.classes_to_index(classes)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    order = np.argsort(index, kind="stable")
    repeated = np.flatnonzero(np.diff(index[order]) == 0)
    if len(repeated):
        raise ValueError(
            f"{source}: dataset index {index[order][repeated[0]]} appears more than once; the file is not dSprites"
        )
    if not np.array_equal(order, np.arange(len(order))):
        images, classes, values = images[order], classes[order], values[order]
    return DSprites(images, classes.astype(np.uint8), values.astype(np.float32), source)


def _pack_rows(read: Callable[[int, int], np.ndarray], n: int, desc: str) -> np.ndarray:
    """(n, 64, 8) packed images from `read(start, stop)` -> (k, 64, 64) uint8, called in order."""
    out = np.empty((n, 64, 8), np.uint8)
    for start in tqdm(range(0, n, _CHUNK), desc=desc, leave=False, disable=None):
        stop = min(start + _CHUNK, n)
        out[start:stop] = np.packbits(read(start, stop), axis=-1)
    return out


_Reader = Callable[[int, int], np.ndarray]


@contextlib.contextmanager
def _open_official(path: Path, fmt: str) -> Iterator[tuple[tuple, _Reader, np.ndarray, np.ndarray]]:
    """Yields (imgs shape, read(start, stop), classes (N, 6), values (N, 6)) of an .npz or .hdf5."""
    if fmt == ".npz":
        if not zipfile.is_zipfile(path):  # numpy would otherwise suggest unpickling it
            raise ValueError("not a zip archive, as every .npz is")
        with np.load(path, allow_pickle=False) as z:
            classes, values = z["latents_classes"], z["latents_values"]
            with z.zip.open("imgs.npy") as f:
                version = np.lib.format.read_magic(f)
                fmt_ = np.lib.format
                header = fmt_.read_array_header_1_0 if version == (1, 0) else fmt_.read_array_header_2_0
                shape, fortran, dtype = header(f)
                if fortran or dtype != np.uint8:
                    order = " (Fortran order)" if fortran else ""
                    raise ValueError(f"imgs must be C-ordered uint8, got {dtype}{order}")

                def read(start: int, stop: int) -> np.ndarray:
                    want = (stop - start) * int(np.prod(shape[1:]))
                    data = f.read(want)
                    if len(data) != want:
                        at = start + len(data) // 4096
                        raise ValueError(f"imgs ends within image {at} of {shape[0]} (truncated)")
                    return np.frombuffer(data, np.uint8).reshape((stop - start, *shape[1:]))

                yield shape, read, classes, values
    else:
        with h5py.File(path, "r") as h:
            imgs = h["imgs"]
            yield imgs.shape, lambda start, stop: imgs[start:stop], h["latents/classes"][()], h["latents/values"][()]


def _read_official(path: str | os.PathLike, source: str, fmt: str | None = None) -> DSprites:
    """Reads the official .npz or .hdf5 (or a subset of its rows in the same layout).

    Args:
      path: the file.
      source: the source to record in the container.
      fmt: '.npz' or '.hdf5'; default the file's extension.
    """
    path = Path(path).expanduser()
    fmt = fmt or path.suffix
    if not path.is_file():
        raise FileNotFoundError(f"dSprites file {path} does not exist; pass the official "
                                "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz or .hdf5")
    if fmt not in (".npz", ".hdf5", ".h5"):
        raise ValueError(f"dSprites file {path}: unknown extension {fmt!r}; expected .npz, .hdf5 or .h5")
    try:
        with _open_official(path, fmt) as (shape, read, classes, values):
            if len(shape) != 3 or tuple(shape[1:]) != (64, 64):
                raise ValueError(f"imgs has shape {tuple(shape)}, expected (N, 64, 64)")
            n = shape[0]
            for name, a in (("classes", classes), ("values", values)):
                if a.shape != (n, 6):
                    names = ", ".join(factors.NAMES)
                    raise ValueError(f"latent {name} have shape {a.shape}, expected ({n}, 6): color, {names}")
            images = _pack_rows(read, n, f"reading {path.name}")
    except KeyError as e:
        raise ValueError(f"dSprites file {path}: missing array {e}; expected the official layout "
                         "(imgs, latents_classes/latents/classes, latents_values/latents/values)") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"dSprites file {path}: {e} (truncated, corrupt or not the official layout?)") from None
    return _canonical(images, classes[:, 1:], values[:, 1:], source)


def _read_records(batches: Iterable[dict], n: int, source: str) -> DSprites:
    """Rows of a prepared tfds dataset (stored shuffled), placed in dataset-index order.

    With all 737,280 images a row's index is its place, so no second copy is made.
    """
    images, classes, values = np.zeros((n, 64, 8), np.uint8), np.zeros((n, 5), np.uint8), np.zeros((n, 5), np.float32)
    done = 0
    for batch in tqdm(batches, total=-(-n // _CHUNK), desc="reading tfds dsprites", leave=False, disable=None):
        c = np.stack([np.asarray(batch[f"label_{k}"]) for k in _TFDS_NAMES], axis=1)
        rows = factors.classes_to_index(c) if n == factors.NUM_IMAGES else np.arange(done, done + len(c))
        images[rows] = np.packbits(np.asarray(batch["image"])[..., 0], axis=-1)
        classes[rows] = c
        values[rows] = np.stack([np.asarray(batch[f"value_{k}"]) for k in _TFDS_NAMES], axis=1)
        done += len(c)
    if done != n:
        raise ValueError(f"{source}: read {done} records, its dataset_info says {n}")
    return _canonical(images, classes, values, source)


def _reachable(url: str) -> bool:
    """Whether `url`'s host accepts a TCP connection within 2 s (DNS included)."""
    parts = urllib.parse.urlsplit(url)
    ok = []

    def probe() -> None:
        address = (parts.hostname, parts.port or 443)
        with contextlib.suppress(OSError), socket.create_connection(address, _PROBE_TIMEOUT_S):
            ok.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S)
    return bool(ok)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 4 MiB blocks; hashed once per (path, inode, size, mtime) in a
    process, so checking a source and then recording it reads a multi-GB file once."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, inode: int, size: int, mtime_ns: int) -> str:
    """`file_sha256` of a file as it is now: a replaced or rewritten file gets a new entry."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> Path:
    """`path` if its sha256 is `sha256`, else a ValueError."""
    digest = file_sha256(path)
    if digest != sha256:
        raise ValueError(f"dSprites file {path}: sha256 {digest} is not the {sha256} tfds registered "
                         "(truncated or corrupt download); delete it and load again")
    return path


def _read_download(path: Path, sha256: str) -> DSprites:
    """dSprites from tfds' downloaded .hdf5, once its sha256 matches."""
    return _read_official(_verified(path, sha256), f"tfds:{path}", ".hdf5")


@contextlib.contextmanager
def _absl_errors_only() -> Iterator[None]:
    """Silences absl (tfds') log messages below ERROR inside the block."""
    from absl import logging as absl_logging

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def _tfds_plan(data_dir: str | None) -> tuple[Callable[[], DSprites] | None, str]:
    """How to read dSprites through tfds (None if it can't be), and why."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        return None, f"tensorflow-datasets is not importable ({e})"
    builder = tfds.builder("dsprites", data_dir=data_dir)
    ((url, info),) = builder.url_infos.items()
    downloads = Path(builder.data_dir_root) / "downloads"
    dl_name = tfds.download.resource.get_dl_fname(url, info.checksum)
    for path in (downloads / builder.name / dl_name, downloads / dl_name, downloads / "manual" / info.filename):
        if path.is_file():
            return functools.partial(_read_download, path, info.checksum), f"tfds' download {path}"
    missing = f"no download of {info.filename} in {downloads}"
    with _absl_errors_only():  # tfds warns of the unprepared folder; the returned reason says it
        prepared = builder.is_prepared()
    if prepared:
        fmt = getattr(builder.info.file_format, "value", str(builder.info.file_format))
        n = builder.info.splits["train"].num_examples
        kw = dict(split="train", data_dir=builder.data_dir_root, download=False)
        where = f"prepared {fmt} dataset {builder.data_dir}"
        if fmt == "array_record":
            def read() -> DSprites:
                ds = tfds.data_source("dsprites", **kw)
                records = (ds.__getitems__(range(s, min(s + _CHUNK, n))) for s in range(0, n, _CHUNK))
                batches = ({k: np.stack([r[k] for r in recs]) for k in recs[0]} for recs in records)
                return _read_records(batches, n, f"tfds:{builder.data_dir}")
            return read, f"tfds' {where}"
        if fmt == "tfrecord" and importlib.util.find_spec("tensorflow") is not None:
            batches = lambda: tfds.as_numpy(tfds.load("dsprites", batch_size=_CHUNK, **kw))
            return lambda: _read_records(batches(), n, f"tfds:{builder.data_dir}"), f"tfds' {where} (TensorFlow)"
        missing += f"; the {where} needs TensorFlow to read"
    else:
        missing += f", no prepared dataset in {builder.data_dir_root}"
    if _reachable(url):
        def fetch() -> DSprites:
            manager = tfds.download.DownloadManager(download_dir=downloads, url_infos=builder.url_infos,
                                                    dataset_name=builder.name)
            path = Path(manager.download(url))
            return _read_official(_verified(path, info.checksum), f"tfds:{path}", ".hdf5")
        return fetch, f"{missing}; fetching {url} with tfds' download manager"
    return None, f"{missing}, and {urllib.parse.urlsplit(url).hostname} is unreachable"


def tfds_unavailable(data_dir: str | None = None) -> str | None:
    """Why source 'tfds' cannot load now (None when it can): no download, no prepared dataset, offline."""
    read, why = _tfds_plan(data_dir)
    return None if read is not None else why


def _fingerprint() -> str:
    """12 hex digits of the renderer's and factor grid's source code: a new renderer, a new cache."""
    digest = hashlib.sha256()
    for module in (render, factors):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render(cache_dir: Path) -> DSprites:
    """All images rendered offline; the packed set is cached in `cache_dir`, written atomically."""
    n = factors.NUM_IMAGES
    path = cache_dir / f"dsprites-render-{_fingerprint()}.npy"
    images = None
    if path.is_file():
        try:
            images = np.load(path, allow_pickle=False)
            if images.shape != (n, 64, 8) or images.dtype != np.uint8:
                raise ValueError(f"holds {images.shape} {images.dtype}, expected ({n}, 64, 8) uint8")
        except (ValueError, OSError, EOFError) as e:
            _say(f"render cache {path} is corrupt ({e}); rendering again")
            images = None
    if images is None:
        images = _pack_rows(lambda a, b: render.render_dsprites(np.arange(a, b)), n, "rendering dSprites")
        _save_atomic(path, images)
        for old in cache_dir.glob("dsprites-render-*.npy"):
            if old != path:
                old.unlink(missing_ok=True)
    classes = factors.all_classes()[:n]  # rows in index order
    return DSprites(images, classes, factors.classes_to_values(classes), f"render:{path}")


def load_dsprites(source: str = "auto", cache_dir: str | None = None, data_dir: str | None = None) -> DSprites:
    """Loads dSprites from `source`, printing one line that says which source is used and why.

    Args:
      source: 'auto' | 'tfds' | 'render' | 'file:PATH' (see the module docstring).
      cache_dir: where the rendered set is cached; default $MAGAJAX_CACHE or ~/.cache/magajax.
      data_dir: the TFDS data dir; default tfds' own (~/tensorflow_datasets or $TFDS_DATA_DIR).

    Returns:
      The DSprites container, rows in dataset-index order.
    """
    if source.startswith("file:"):
        _say(f"reading {source[5:]} (source {source})")
        return _read_official(source[5:], source)
    if source not in SOURCES:
        raise ValueError(f"unknown dSprites source {source!r}; valid sources: {', '.join(SOURCES)}")
    reason = "source render"
    if source in ("auto", "tfds"):
        read, why = _tfds_plan(data_dir)
        if read is not None:
            _say(f"tfds, from {why} (source {source})")
            return read()
        if source == "tfds":
            raise FileNotFoundError(f"tfds dSprites is unavailable: {why}; use source 'render' or 'file:PATH'")
        reason = f"source auto: {why}"
    cache = Path(cache_dir or os.environ.get("MAGAJAX_CACHE") or "~/.cache/magajax").expanduser()
    _say(f"offline renderer, cached in {cache} ({reason})")
    return _render(cache)
