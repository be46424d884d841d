"""Where a run's images came from: workdir/data.json, and the check that a later load is the same data.

config.json keeps `data.source` as the user gave it ('auto'); data.json says what it became:

  kind    source               identified by
  file    file:ABSOLUTE_PATH   the file's sha256
  tfds    tfds                 tfds' downloaded file's sha256, or a prepared dataset's version
  render  render               RENDER_VERSION and the sha256 of SAMPLE rendered images, bit-packed
  memory  the container's      the sha256 of its images and classes (images handed to `train`
          label                in memory; they cannot be loaded again)

plus the number of images and where they were (the file, tfds' download or prepared folder, the
render cache). A run that changes its data (`record` with another provenance) keeps the earlier
ones, with the time each was recorded, in data.json's "history".

`load(workdir, override, default)` is how a resumed run, an evaluation and the figures get their
images: an explicit `override` source wins; otherwise the recorded source is loaded and checked
to be the same data, and when it is unavailable or not the same (file missing, sha256 differs,
tfds unavailable, renderer changed) it stops with one line naming the source and --data. It
never switches source by itself. A workdir without data.json (a run from before it was recorded)
loads `default` with a notice, printed once per workdir and process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from etils import epath

from magajax.data import factors, render, sources
from magajax.data.sources import DSprites

FILE = "data.json"
KINDS = ("file", "tfds", "render", "memory")
SAMPLE = np.random.default_rng(0).choice(factors.NUM_IMAGES, 32, replace=False)  # indices fingerprinting the renderer
SOURCE_FLAG = "--data=auto|tfds|render|file:PATH"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What a run's images were.

    Attributes:
      kind: 'file', 'tfds', 'render' or 'memory' (see the module docstring).
      source: the source that loads the same images again ('file:/abs/path', 'tfds', 'render'),
        or a container's label for 'memory'.
      images: how many images.
      sha256: of the file (file, tfds' download), of the SAMPLE rendered images (render), or of the
        images and classes (memory); None for a prepared tfds dataset.
      version: the tfds dataset's version (prepared) or RENDER_VERSION (render); else None.
      location: the file, tfds' download or prepared folder, or the render cache.
    """

    kind: str
    source: str
    images: int
    sha256: str | None = None
    version: str | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown data provenance kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    def label(self) -> str:
        """One readable line: 'file:/data/d.npz (sha256 0123456789ab…, 737,280 images)'."""
        ids = [f"sha256 {self.sha256[:12]}…"] if self.sha256 else []
        ids += [f"version {self.version}"] if self.version else []
        return f"{self.source} ({', '.join([*ids, f'{self.images:,} images'])})"

    def identity(self) -> tuple:
        """What must agree for two loads to be the same data (the location may move)."""
        return self.kind, self.source, self.images, self.sha256, self.version


def render_sha256() -> str:
    """The sha256 of the SAMPLE images, bit-packed, as the renderer draws them now."""
    return hashlib.sha256(render.render_dsprites(SAMPLE, packed=True).tobytes()).hexdigest()


def describe(ds: DSprites) -> Provenance:
    """The provenance of loaded images, from their `source` ('file:…', 'tfds:…', 'render:…', else memory)."""
    n = len(ds)
    if ds.source.startswith("file:"):
        path = Path(ds.source[5:]).expanduser().resolve()
        return Provenance("file", f"file:{path}", n, sha256=sources.file_sha256(path), location=str(path))
    if ds.source.startswith("tfds:"):
        where = Path(ds.source[5:])
        if where.is_file():  # tfds' download of the official file
            return Provenance("tfds", "tfds", n, sha256=sources.file_sha256(where), location=str(where))
        return Provenance("tfds", "tfds", n, version=where.name, location=str(where))  # <data_dir>/dsprites/<version>
    if ds.source.startswith("render:"):
        return Provenance("render", "render", n, sha256=render_sha256(), version=str(render.RENDER_VERSION),
                          location=ds.source[7:])
    digest = hashlib.sha256(np.ascontiguousarray(ds.images).tobytes())
    digest.update(np.ascontiguousarray(ds.classes).tobytes())
    return Provenance("memory", ds.source, n, sha256=digest.hexdigest())


def _broken(path: epath.Path, why: Any) -> ValueError:
    return ValueError(f"{path} is not a magajax data record ({why}); fix it, or delete it and pass {SOURCE_FLAG} "
                      "to say which data the run uses")


def _from_dict(entry: dict[str, Any], path: epath.Path) -> Provenance:
    fields = {f.name for f in dataclasses.fields(Provenance)}
    try:
        return Provenance(**{k: v for k, v in entry.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise _broken(path, e) from None


def _read_file(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in workdir/data.json, None when there is none."""
    path = epath.Path(workdir) / FILE
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
    except ValueError as e:
        raise _broken(path, e) from None
    if not isinstance(entry, dict):
        raise _broken(path, "not a JSON object")
    return entry


def read(workdir: str | os.PathLike) -> Provenance | None:
    """The provenance recorded in workdir/data.json, None when the workdir has none."""
    record = _read_file(workdir)
    return None if record is None else _from_dict(record, epath.Path(workdir) / FILE)


def record(workdir: str | os.PathLike, prov: Provenance) -> None:
    """Writes `prov` to workdir/data.json (atomically); a different earlier record moves to its history."""
    path = epath.Path(workdir) / FILE
    old = _read_file(workdir)
    history = [] if old is None else list(old.get("history", []))
    if old is not None:
        previous = _from_dict(old, path)
        if previous.identity() == prov.identity():
            return
        history.append({**dataclasses.asdict(previous), "recorded": old.get("recorded")})
        print(f"dSprites: the run's data changed from {previous.label()} to {prov.label()} (recorded in {path})",
              flush=True)
    entry = {**dataclasses.asdict(prov), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "history": history}
    tmp = path.with_name(FILE + ".tmp")  # written whole, then renamed over data.json (also in a bucket)
    tmp.write_text(json.dumps(entry, indent=1) + "\n")
    tmp.replace(path)


def _unavailable(workdir: str | os.PathLike, prov: Provenance, why: str) -> str:
    """The one-line error of a recorded source that cannot be loaded as it was."""
    return (f"the run in {workdir} used dSprites from {prov.label()}, recorded in {epath.Path(workdir) / FILE}, "
            f"but {why}; restore that source, or pass {SOURCE_FLAG} to use another explicitly")


def check(workdir: str | os.PathLike, prov: Provenance) -> None:
    """Raises FileNotFoundError or ValueError (naming the source and --data) when `prov` is not loadable as
    recorded: a missing or changed file, another renderer, tfds unavailable, or images given in memory.
    What tfds gives is compared with the record once read (`load`)."""
    if prov.kind == "memory":
        raise FileNotFoundError(_unavailable(workdir, prov, "those images were given in memory and cannot be "
                                             "loaded again"))
    if prov.kind == "file":
        path = Path(prov.source[5:])
        if not path.is_file():
            raise FileNotFoundError(_unavailable(workdir, prov, f"{path} is missing"))
        digest = sources.file_sha256(path)
        if digest != prov.sha256:
            raise ValueError(_unavailable(workdir, prov, f"{path} has changed (its sha256 is now {digest})"))
    if prov.kind == "render":
        if str(render.RENDER_VERSION) != prov.version:
            raise ValueError(_unavailable(workdir, prov, f"the renderer is now version {render.RENDER_VERSION}"))
        if render_sha256() != prov.sha256:
            raise ValueError(_unavailable(workdir, prov, "the renderer draws other images now (the sha256 of its "
                                          "sample images differs)"))
    if prov.kind == "tfds":
        why = sources.tfds_unavailable()
        if why is not None:
            raise FileNotFoundError(_unavailable(workdir, prov, why))


def _checked(workdir: str | os.PathLike, default: str) -> Provenance | None:
    """The recorded provenance once `check`ed; None, with a notice, when the workdir has no data.json."""
    prov = read(workdir)
    if prov is None:
        _notice(str(Path(workdir).resolve()), default)
    else:
        check(workdir, prov)
    return prov


@functools.cache
def _notice(workdir: str, default: str) -> None:
    print(f"dSprites: {workdir} has no {FILE} (a run from before magajax recorded its data source); "
          f"loading its configured source {default!r}", flush=True)


def resolve(workdir: str | os.PathLike, override: str | None, default: str = "auto") -> str:
    """The source to load for a run: `override` when given, else the recorded one once `check`ed, else
    (no data.json) `default`, with a notice."""
    if override is not None:
        return override
    prov = _checked(workdir, default)
    return default if prov is None else prov.source


def load(workdir: str | os.PathLike, override: str | None = None, default: str = "auto") -> DSprites:
    """A run's images: from `override` when given, else from the recorded source, checked to be the same
    data (a tfds load is compared once read), else (no data.json) from `default`, with a notice."""
    if override is not None:
        return sources.load_dsprites(override)
    prov = _checked(workdir, default)
    ds = sources.load_dsprites(default if prov is None else prov.source)
    if prov is not None and prov.kind == "tfds":
        now = describe(ds)
        if now.identity() != prov.identity():
            raise ValueError(_unavailable(workdir, prov, f"tfds now gives {now.label()}"))
    return ds
