"""Train/test splits of dSprites: named splits and a small expression language.

A split holds out (tests on) the images its expression selects and trains on the rest.
Named splits, on factor classes:

    element        shape=ellipse & 2<=scale<=5 & 14<=orientation<=25 & 21<=x<=31 & 21<=y<=31   5,808
    range          shape=square & x>=16                                                     122,880
    extrapolation  x>=16                                                                    368,640
    element-blog   shape=ellipse & scale=0 & 13<=orientation<=26 & 19<=x<=31 & 19<=y<=31     2,366
    range-blog     shape=ellipse & x>=16                                                    122,880
    element-cartan shape=ellipse & scale=0 & 14<=orientation<=27 & 20<=x<=31 & 20<=y<=31     2,016
    range-cartan   shape=heart & x>=16                                                      122,880
    none           nothing held out                                                              0

Expression syntax: clauses joined by `&`; a clause compares one factor with numbers, either
`factor OP number`, `number OP factor` or a chained range `a OP factor OP b`, OP one of
=, ==, !=, <, <=, >, >=. Factors: shape, scale, orientation, x, y (posx, posy also accepted) and
orientation_deg (the orientation value in degrees).

- An integer without a decimal point is a factor CLASS: `x>=16` is classes 16–31, `scale=0` is
  the smallest scale, `shape=1` the ellipse.
- A number with a decimal point is a factor VALUE: `x>=0.6` (values linspace(0, 1, 32)),
  `scale<0.6`, `shape=2.0` (the ellipse's value). orientation_deg compares degrees, with or
  without a decimal point: `120<=orientation_deg<=240` is classes 13–26.
- shape also takes a name: square, ellipse, heart.
Value comparisons allow 1e-6 of rounding, so bounds that hit a grid value include it.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from typing import NoReturn

import numpy as np

from magajax.config import DEFAULT_PIVOT
from magajax.data import factors

NAMED = {
    "element": "shape=ellipse & 2<=scale<=5 & 14<=orientation<=25 & 21<=x<=31 & 21<=y<=31",
    "range": "shape=square & x>=16",
    "extrapolation": "x>=16",
    "element-blog": "shape=ellipse & scale=0 & 13<=orientation<=26 & 19<=x<=31 & 19<=y<=31",
    "range-blog": "shape=ellipse & x>=16",
    "element-cartan": "shape=ellipse & scale=0 & 14<=orientation<=27 & 20<=x<=31 & 20<=y<=31",
    "range-cartan": "shape=heart & x>=16",
    "none": "",
}
SPLITS = tuple(NAMED)
SYNTAX = (
    "an expression like 'shape=ellipse & x>=0.6 & 120<=orientation_deg<=240' "
    "(clauses joined by &; integers are classes, decimals are values)"
)

_TOKEN = re.compile(
    r"(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+))|(?P<name>[A-Za-z_]\w*)|(?P<op>==|!=|<=|>=|=|<|>)|(?P<amp>&))"
)
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIP = {"=": "=", "==": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ALIASES = {"posx": "x", "posy": "y", "orientation_deg": "orientation"}
_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Split:
    """Rows of a classes array split into train and held-out test (both sorted int32).

    Attributes:
      name: the split's name or expression.
      train, test: row indices into the classes the split was made from.
      pivot_row: the row of the pivot image (in train, unless make_split allowed a held-out pivot).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    pivot_row: int


def _tokens(spec: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) tokens of an expression; an unknown character is a ValueError."""
    out, pos = [], 0
    while True:
        pos += len(spec[pos:]) - len(spec[pos:].lstrip())
        if pos == len(spec):
            return out
        m = _TOKEN.match(spec, pos)
        if m is None:
            _malformed(spec, pos, "unexpected character")
        out.append((m.lastgroup, m.group(), pos))
        pos = m.end()


def _malformed(spec: str, pos: int, why: str) -> NoReturn:
    near = spec[pos : pos + 12]
    raise ValueError(
        f"malformed split expression {spec!r} at character {pos} ({near!r}): {why}; write {SYNTAX}"
    )


def _clause(spec: str, toks: list[tuple[str, str, int]], where: int, tables: dict[str, np.ndarray]) -> None:
    """Intersects the allowed-class table of the clause's factor with the clause `toks`."""
    expect = [("op",) if k % 2 else ("num", "name") for k in range(len(toks))]
    if len(toks) not in (3, 5) or any(t[0] not in e for t, e in zip(toks, expect)):
        _malformed(spec, where, "expected 'factor OP number', 'number OP factor' or 'a OP factor OP b'")
    known = factors.NAMES + tuple(_ALIASES)
    found = [k for k in range(0, len(toks), 2) if toks[k][1].lower() in known]
    if len(found) != 1:
        _malformed(spec, where, f"a clause compares exactly one factor of {', '.join(known)}")
    if len(toks) == 5 and found[0] != 2:
        _malformed(spec, where, "a range is written 'a OP factor OP b', the factor in the middle")
    i = found[0]
    key = toks[i][1].lower()
    factor = _ALIASES.get(key, key)
    comparisons = []
    if i + 2 < len(toks):
        comparisons.append((toks[i + 1][1], toks[i + 2]))
    if i >= 2:
        comparisons.append((_FLIP[toks[i - 1][1]], toks[i - 2]))
    for op, (kind, text, at) in comparisons:
        if kind == "name":
            if factor != "shape" or text.lower() not in factors.SHAPE_NAMES:
                names = " or a shape name (square, ellipse, heart)" if factor == "shape" else ""
                _malformed(spec, at, f"expected a number{names}")
            lhs, rhs, tol = np.arange(3), factors.SHAPE_NAMES.index(text.lower()), 0.0
        elif key == "orientation_deg":
            lhs, rhs, tol = np.degrees(factors.VALUES["orientation"]), float(text), _TOL
        elif "." in text:
            lhs, rhs, tol = factors.VALUES[factor], float(text), _TOL
        else:
            lhs, rhs, tol = np.arange(len(factors.VALUES[factor])), int(text), 0.0
            if not 0 <= rhs < len(lhs):
                why = f"{factor} classes lie in 0..{len(lhs) - 1} (a value needs a decimal point)"
                _malformed(spec, at, why)
        if op in ("=", "==", "!="):
            hit = np.abs(lhs - rhs) <= tol
            tables[factor] &= ~hit if op == "!=" else hit
        else:
            tables[factor] &= _OPS[op](lhs, rhs + (tol if op in ("<=", ">") else -tol))


def held_out_mask(spec: str, classes: np.ndarray) -> np.ndarray:
    """True where an image is held out (test) by a named split or an expression.

    Args:
      spec: a name in SPLITS or an expression (see the module docstring).
      classes: (N, 5) factor classes, columns as in factors.NAMES.

    Returns:
      (N,) bool.
    """
    classes = factors.check_classes(classes)
    expr = spec.strip()
    if re.fullmatch(r"[\w-]*", expr):
        if expr.lower() not in NAMED:
            raise ValueError(f"unknown split {spec!r}; known splits: {', '.join(SPLITS)}, or {SYNTAX}")
        expr = NAMED[expr.lower()]
        if not expr:
            return np.zeros(len(classes), bool)
    tables = {name: np.ones(n, bool) for name, n in zip(factors.NAMES, factors.SIZES)}
    toks = _tokens(expr)
    start, where = 0, 0
    for j in [k for k, t in enumerate(toks) if t[0] == "amp"] + [len(toks)]:
        _clause(expr, toks[start:j], toks[start][2] if start < j else where, tables)
        where = toks[j][2] if j < len(toks) else len(expr)
        start = j + 1
    mask = np.ones(len(classes), bool)
    for col, name in enumerate(factors.NAMES):
        if not tables[name].all():
            mask &= tables[name][classes[:, col]]
    return mask


def _describe(index: int) -> str:
    shape, scale, orientation, x, y = factors.index_to_classes(index)[0]
    return f"({factors.SHAPE_NAMES[shape]}, scale {scale}, orientation {orientation}, x {x}, y {y})"


def make_split(
    spec: str, classes: np.ndarray, pivot: int = DEFAULT_PIVOT, *, allow_held_out_pivot: bool = False
) -> Split:
    """Splits the rows of `classes` into train and held-out test; the pivot must be in train unless allowed.

    Args:
      spec: a name in SPLITS or an expression (see the module docstring).
      classes: (N, 5) factor classes of the images held, in any order.
      pivot: dSprites dataset index of the pivot image; its row is found by its classes.
      allow_held_out_pivot: accept a pivot in the held-out set with one printed warning (for training
        whose pairs never use the pivot, pairs='shuffle'); otherwise such a pivot is an error.

    Returns:
      The Split.
    """
    mask = held_out_mask(spec, classes)
    named = spec.strip().lower() in NAMED
    if not named and not mask.any():
        raise ValueError(f"split expression {spec!r} selects no images of the {len(mask)} given; "
                         f"loosen it (e.g. 'x>=16'), or use the split 'none' to train on all")
    if mask.all() and len(mask):
        raise ValueError(f"split {spec!r} selects all {len(mask)} images, leaving none to train on; "
                         f"narrow it (e.g. add '& shape=ellipse')")
    desc = _describe(pivot)
    rows = np.flatnonzero(factors.classes_to_index(classes) == pivot)
    if not len(rows):
        raise ValueError(
            f"pivot {pivot} {desc} is not in the data ({len(mask)} images); "
            "choose a pivot index the data holds"
        )
    train = np.flatnonzero(~mask).astype(np.int32)
    if mask[rows[0]] and allow_held_out_pivot:
        print(f"warning: pivot {pivot} {desc} lies in the held-out set of split {spec!r}: evaluation decodes "
              "from an image the model never trained on")
    elif mask[rows[0]]:
        suggestion = int(factors.classes_to_index(classes[train[:1]])[0])
        raise ValueError(f"pivot {pivot} {desc} lies in the held-out set of split {spec!r}; "
                         f"choose a pivot outside it, e.g. {suggestion} {_describe(suggestion)}")
    test = np.flatnonzero(mask).astype(np.int32)
    return Split(name=spec.strip(), train=train, test=test, pivot_row=int(rows[0]))
