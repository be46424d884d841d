"""Orbax checkpoints of a run: save every N steps, keep the last K, resume from the latest readable one.

On disk, `workdir/checkpoints/<step>/` is an orbax checkpoint (its arrays in `default/`) plus
`checksums.json`: for every array leaf, named by its path ("variables.params.x.kernel"), its dtype,
shape and the sha256 of its bytes. The checksums are taken from the host copy of the state when it is
saved and written (atomically) once the asynchronous save has completed, so they live and rotate with
their step. Restoring compares the saved structure with the target first, then verifies every array
against its checksum and checks that it is finite. Failures are told apart:

- damaged (unreadable bytes, checksum mismatch, non-finite values): that checkpoint alone is moved
  to `workdir/corrupt/<step>-<time>/` (never deleted) and the next older one is tried; when none is
  left, CheckpointError lists each step and why;
- mismatched (another structure, shape or dtype than this run's state, or no `_METADATA`):
  CheckpointError saying what differs, nothing moved;
- I/O errors (EIO, EACCES, ENOSPC, ...): retried once, then CheckpointError, nothing moved.

A checkpoint without checksums (an older magajax, or a run stopped before they were written) is
restored once its arrays are found finite, with a message, and gets its checksums then. Messages are
a few lines; tracebacks and orbax/TensorStore detail are appended to `workdir/errors.log`. Arrays are
restored onto this machine's devices, whatever the devices they were saved from; `load` reads the
model variables alone.

In a multi-host run every process saves and restores (orbax coordinates them); process 0 alone
writes checksums.json and errors.log, moves damaged checkpoints aside and prints, and the others
wait for a move before they look for the next checkpoint. The workdir may be a bucket (gs://...).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Sharding, SingleDeviceSharding

from magajax.config import Config
from magajax.training import hosts
from magajax.training import workdir as wd

CHECKSUMS = "checksums.json"  # inside each step folder
ITEM = "default"  # orbax's folder of the arrays inside each step folder
RETRY_AFTER_S = 1.0
TRANSIENT_ERRNOS = {errno.EIO, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EAGAIN, errno.EBUSY,
                    errno.ETIMEDOUT, errno.ESTALE, errno.EINTR, errno.EMFILE, errno.ENFILE}
TRANSIENT_MARKS = ("UNAVAILABLE", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED",
                   "Input/output error", "No space left", "Permission denied")
DAMAGE_MARKS = ("DATA_LOSS", "NOT_FOUND", "OUT_OF_RANGE", "Error reading", "Error decoding", "Error opening",
                "error while reading", "DecodeError")
_said_unverified: set[epath.Path] = set()


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, or not this run's structure."""


class Damaged(CheckpointError):
    """A checkpoint whose bytes are unreadable, fail their checksum or hold non-finite values."""


def leaf_name(path: tuple[Any, ...]) -> str:
    """A pytree key path as orbax names it: ('opt_state', 0, 'mu') -> "opt_state.0.mu"."""
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def named_leaves(tree: Any) -> dict[str, Any]:
    """{leaf name: leaf} of a pytree."""
    return {leaf_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def host_array(x: Any) -> np.ndarray:
    """The host copy of a leaf; a replicated array spanning several hosts is read from a local shard."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError(f"cannot checksum an array sharded across hosts ({x.sharding}); replicate it first")
        x = x.addressable_data(0)
    return np.ascontiguousarray(np.asarray(x))


def record(a: np.ndarray) -> dict[str, Any]:
    """{dtype, shape, sha256 of the bytes} of a host array: one leaf's entry in checksums.json."""
    return {"dtype": a.dtype.name, "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def checksums(tree: Any) -> dict[str, dict[str, Any]]:
    """{leaf name: `record`} of every leaf of `tree`."""
    return {name: record(host_array(x)) for name, x in named_leaves(tree).items()}


def first_problem(tree: Any, expected: dict[str, dict[str, Any]] | None) -> str | None:
    """Why `tree` is not the saved state: a leaf failing its checksum or holding NaN/inf; None if sound."""
    for name, x in named_leaves(tree).items():
        a = host_array(x)
        want = (expected or {}).get(name)
        if want is not None and record(a) != want:
            return f"checksum mismatch in {name}"
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            return f"non-finite values in {name}"
    return None


def _spec(x: Any) -> tuple[tuple[int, ...], str] | None:
    dtype = getattr(x, "dtype", None)
    return (tuple(getattr(x, "shape", ())), np.dtype(dtype).name) if dtype is not None else None


def differences(saved: dict[str, Any], expected: dict[str, Any], limit: int = 3) -> list[str]:
    """What differs between the saved leaves and the expected ones, shortest first, at most `limit` lines."""
    lines = []
    only_saved, only_expected = sorted(set(saved) - set(expected)), sorted(set(expected) - set(saved))
    for top in sorted({n.split(".")[0] for n in only_saved + only_expected}):
        a = [n for n in saved if n.split(".")[0] == top]
        b = [n for n in expected if n.split(".")[0] == top]
        extra = [n for n in only_saved if n.split(".")[0] == top][:2]
        missing = [n for n in only_expected if n.split(".")[0] == top][:2]
        lines.append(f"{top}: saved {len(a)} leaves ({', '.join(extra) or '-'}, ...), "
                     f"this run expects {len(b)} ({', '.join(missing) or '-'}, ...)")
    for name in sorted(set(saved) & set(expected)):
        s, e = _spec(saved[name]), _spec(expected[name])
        if s and e and s != e:
            lines.append(f"{name}: saved {s[1]}{s[0]}, this run expects {e[1]}{e[0]}")
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def abstract(tree: Any, sharding: Sharding | None = None) -> Any:
    """The restore target of `tree`: shapes and dtypes placed as its arrays are (or on `sharding`, else the
    first local device); NumPy and Python leaves are restored as such on the host."""
    default = sharding or SingleDeviceSharding(jax.local_devices()[0])

    def spec(x: Any) -> Any:
        if isinstance(x, np.ndarray | np.generic | int | float | bool):
            return x
        own = x.sharding if isinstance(x, jax.Array | jax.ShapeDtypeStruct) else None  # not orbax's metadata
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or own or default)

    return jax.tree.map(spec, tree)


def _messages(error: BaseException) -> str:
    """The type and message of `error` and of each exception it was raised from, one per line."""
    lines, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        lines.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(lines)


def _kind(error: BaseException) -> str:
    """'transient', 'damaged' or 'unknown', from the exception and the messages it carries."""
    text = _messages(error)
    if isinstance(error, FileNotFoundError | json.JSONDecodeError | UnicodeDecodeError):
        return "damaged"
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
        return "transient"
    if any(m in text for m in TRANSIENT_MARKS):
        return "transient"
    if any(m in text for m in DAMAGE_MARKS):
        return "damaged"
    return "transient" if isinstance(error, OSError) else "unknown"


def _summary(error: BaseException) -> str:
    """One short line: the TensorStore status, the array and the file it names, else the first line."""
    text = _messages(error)
    code = re.search(r"\b(DATA_LOSS|NOT_FOUND|OUT_OF_RANGE|UNAVAILABLE|PERMISSION_DENIED|RESOURCE_EXHAUSTED|"
                     r"DEADLINE_EXCEEDED|INVALID_ARGUMENT|FAILED_PRECONDITION|INTERNAL|UNKNOWN): ", text)
    array = re.search(r'reading "([^"/]+)/', text)
    files = re.findall(r'local file "([^"]+)"', text)
    if code or array or files:
        return " ".join(filter(None, [code and code.group(1), array and f"reading {array.group(1)}",
                                      files and f"in {files[-1]}"]))
    first = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:160]}"


class Checkpoints:
    """The orbax CheckpointManager of `workdir/checkpoints`, with checksums.

    Args:
      workdir: the run's folder.
      keep: how many of the most recent checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, keep: int = 3):
        self.workdir = wd.absolute(workdir)
        self.directory = self.workdir / wd.CHECKPOINTS
        self.errors = self.workdir / wd.ERRORS
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler(),
        )
        self._unsealed: dict[int, dict[str, dict[str, Any]]] = {}  # saved steps whose checksums are not written yet

    def steps(self) -> list[int]:
        """Saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Saves `state` as step `step` (asynchronously; atomic on completion; checksums follow it)."""
        self.wait()
        sums = checksums(state) if hosts.is_lead() else {}
        if self.manager.save(step, args=ocp.args.StandardSave(state)):
            self._unsealed[step] = sums

    def wait(self) -> None:
        """Blocks until pending saves are on disk, then writes their checksums."""
        self.manager.wait_until_finished()
        for step, sums in self._unsealed.items():
            if (self.directory / str(step)).is_dir():
                self._write_checksums(step, sums)
        self._unsealed.clear()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, int] | None:
        """Restores into the structure of `target` (placed like its arrays): the given step, else the
        latest sound one.

        Returns (state, step), or None when the run has no checkpoint. Damaged checkpoints are moved to
        `workdir/corrupt/` and the next older one is tried; if none is left, CheckpointError lists them,
        and so does every later restore while corrupt/ holds them and no checkpoint was saved since.
        """
        self.wait()
        saved = self.steps()
        corrupt = self.workdir / wd.CORRUPT
        if not saved and step is None and corrupt.is_dir() and any(corrupt.iterdir()):
            raise CheckpointError(
                f"every checkpoint of {self.workdir} was found damaged and moved to {corrupt}; not restarting "
                f"from step 0 silently: details in {self.errors}; to start afresh use --overwrite "
                "(moves the old run aside)"
            )
        if step is not None:
            self._require(step, saved)
        damaged = []
        for s in [step] if step is not None else saved[::-1]:
            try:
                state = self._restore_step(s, target)
            except Damaged as e:
                if step is not None:
                    raise self._damaged(s, e) from None
                aside = self._move_aside(s)
                damaged.append(f"step {s}: {e} (moved to {aside})")
                if hosts.is_lead():
                    print(f"checkpoint at step {s} is unreadable ({e}); moved it to {aside} and trying the previous "
                          f"one; details in {self.errors}")
                continue
            return state, s
        if damaged:
            raise CheckpointError(
                f"no checkpoint in {self.directory} could be restored:\n  " + "\n  ".join(damaged)
                + f"\ndetails in {self.errors}; to start afresh use --overwrite (moves the old run aside)"
            )
        return None

    def variables(self, step: int, sharding: Sharding | None = None) -> Any:
        """The model variables of step `step` alone (not the optimiser state), verified, on `sharding`
        (default: the first local device). Raises Damaged or CheckpointError."""
        metadata = self._metadata(step)
        if "variables" not in metadata:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} holds no model variables "
                                  f"(it holds {sorted(metadata)})")
        target = {"variables": abstract(metadata["variables"], sharding)}
        item = self.directory / str(step) / ITEM

        args = ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
        )

        def read() -> Any:
            with ocp.PyTreeCheckpointer() as reader:
                return reader.restore(item, args=args)

        restored = self._read(step, read, item)
        self._verify(step, restored)
        return restored["variables"]

    def close(self) -> None:
        self.wait()
        self.manager.close()

    def _require(self, step: int, saved: list[int]) -> None:
        """A CheckpointError listing the saved steps unless `step` is one of them."""
        if step not in saved:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; saved steps: {saved}")

    def _damaged(self, step: int, error: Damaged, advice: str = "") -> CheckpointError:
        """The error of a damaged checkpoint asked for by its step (nothing is moved)."""
        return CheckpointError(
            f"checkpoint {self.directory / str(step)} is damaged: {error}; details in {self.errors}{advice}"
        )

    def _restore_step(self, step: int, target: Any) -> Any:
        saved = named_leaves(self._metadata(step))
        diffs = differences(saved, named_leaves(target))
        if diffs:
            self._log(step, "does not match this run's state:\n  " + "\n  ".join(diffs))
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} does not match this run's state: {'; '.join(diffs)}.\n"
                "Nothing was moved: resume with the code and config that wrote it, "
                "or start afresh with --overwrite (moves the old run aside)."
            )
        spec = abstract(target)
        state = self._read(step, lambda: self.manager.restore(step, args=ocp.args.StandardRestore(spec)),
                           self.directory / str(step) / ITEM)
        if self._verify(step, state) is None:
            self._write_checksums(step, checksums(state))
        return state

    def _metadata(self, step: int) -> Any:
        """The saved tree of ArrayMetadata (shape, dtype) of step `step`."""
        path = self.directory / str(step) / ITEM / "_METADATA"
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} has no {ITEM}/_METADATA, so its structure cannot be "
                "checked; nothing was moved. Restore that file, or move the step folder aside to use an older one"
            )
        metadata = self._read(step, lambda: self.manager.item_metadata(step), path)
        if metadata is None:
            self._log(step, f"orbax read no metadata from {path}")
            raise Damaged(f"unreadable {path}")
        return metadata.tree

    def _read(self, step: int, read: Callable[[], Any], source: epath.Path) -> Any:
        """`read()` of `source`, retried once after an I/O error; raises Damaged for unreadable bytes."""
        for attempt in (1, 2):
            try:
                return read()
            except Exception as e:  # orbax and TensorStore raise many types; sorted out below
                kind, summary = _kind(e), _summary(e)
                self._log(step, f"{kind}: {summary}", e)
                if kind == "damaged":
                    where = "" if " in /" in summary else f" in {source}"
                    raise Damaged(f"unreadable bytes: {summary}{where}") from e
                if kind != "transient" or attempt == 2:
                    tries = " after two tries" if kind == "transient" else ""
                    raise CheckpointError(
                        f"checkpoint {source} could not be read{tries} ({summary}); "
                        f"nothing was moved; details in {self.errors}"
                    ) from None
            time.sleep(RETRY_AFTER_S)

    def _verify(self, step: int, state: Any) -> dict[str, Any] | None:
        """Checks `state` against the step's checksums and for finiteness; returns the checksums (None if
        the step has none, which is said once)."""
        path = self.directory / str(step) / CHECKSUMS
        expected = None
        if path.is_file():
            try:
                expected = json.loads(path.read_text())["leaves"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                self._log(step, f"unreadable {path}", e)
                raise Damaged(f"unreadable {path}") from e
        problem = first_problem(state, expected)
        if problem:
            self._log(step, problem)
            raise Damaged(problem)
        if expected is None and path not in _said_unverified:
            _said_unverified.add(path)
            if hosts.is_lead():
                print(f"checkpoint {path.parent} has no checksums (written by an older magajax, or stopped before "
                      "they were written); its arrays are finite but unverified")
        return expected

    def _write_checksums(self, step: int, sums: dict[str, dict[str, Any]]) -> None:
        if hosts.is_lead():
            path = self.directory / str(step) / CHECKSUMS
            wd.write_atomic(path, json.dumps({"format": 1, "algorithm": "sha256", "step": step, "leaves": sums},
                                             indent=1))

    def _log(self, step: int, what: str, error: BaseException | None = None) -> None:
        """Appends the full detail to workdir/errors.log (on process 0; skipped where the workdir is read-only)."""
        if not hosts.is_lead():
            return
        detail = "".join(traceback.format_exception(error)) if error is not None else ""
        try:
            wd.append_text(self.errors, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {self.directory / str(step)} "
                                        f"(step {step}): {what}\n{detail}")
        except OSError:
            pass

    def _move_aside(self, step: int) -> epath.Path:
        """Moves the step folder to corrupt/<step>-<time>/ (process 0; the others wait for it)."""
        aside = self.workdir / wd.CORRUPT / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        with hosts.agreed(f"move the damaged checkpoint {step} aside"):
            if hosts.is_lead():
                try:
                    aside.parent.mkdir(exist_ok=True)
                    (self.directory / str(step)).rename(aside)
                except OSError as e:
                    self._log(step, f"could not move to {aside}", e)
                    raise CheckpointError(f"checkpoint {self.directory / str(step)} is damaged and could not be "
                                          f"moved to {aside} ({e}); move it aside by hand") from None
        self.manager.reload()
        return aside


def load(workdir: str | os.PathLike, step: int | None = None) -> tuple[Config, Any, int]:
    """The run's Config, the verified model variables of its latest (or given) checkpoint on this
    machine's first device, and that step. Nothing is moved: a damaged checkpoint raises CheckpointError."""
    config = wd.read_config(workdir)
    ckpt = Checkpoints(workdir)
    try:
        steps = ckpt.steps()
        if not steps:
            raise FileNotFoundError(
                f"no checkpoint in {ckpt.directory}: train first with "
                f"`python -m experiments.train --workdir={workdir}`"
            )
        if step is not None:
            ckpt._require(step, steps)
        chosen = step if step is not None else steps[-1]
        try:
            variables = ckpt.variables(chosen)
        except Damaged as e:
            raise ckpt._damaged(chosen, e, f"\nload an older one with step= (magajax.load) or --step; "
                                f"saved steps: {steps}") from None
    finally:
        ckpt.close()
    return config, variables, chosen
