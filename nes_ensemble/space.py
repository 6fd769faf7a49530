"""The search space: the user's box or named, typed parameters, and the map to the unit cube the search
works in.

Every part of the search works in [0, 1]^n; only the optimizer's ``ask``, ``tell`` and results see
the user's coordinates (an array for a box, a dict of native values per point for a ``Space``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def check_bounds(bounds: Sequence[Sequence[float]]) -> np.ndarray:
    """Bounds as a float array [n, 2], or a ValueError that says what is wrong with them."""
    try:
        if any(isinstance(v, (str, bytes, bool)) for v in np.asarray(bounds, dtype=object).ravel()):
            raise TypeError("not numbers")
        b = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"bounds={bounds!r}: expected a sequence of (low, high) pairs of numbers") from None
    # [lows, highs] (two rows) is the other common layout: say so, as its transpose is what is meant
    transposed = b.ndim == 2 and b.shape[0] == 2 and np.all(np.isfinite(b)) and np.all(b[0] < b[1])
    hint = "; for [lows, highs] pass its transpose, e.g. np.transpose(bounds)" if transposed else ""
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] == 0:
        raise ValueError(f"bounds has shape {b.shape}: expected one (low, high) pair per dimension, e.g. "
                         f"[[0, 1], [0, 1]]{hint}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"bounds={b.tolist()}: every low and high must be a finite number")
    with np.errstate(over="ignore"):
        wide = np.flatnonzero(~np.isfinite(b[:, 1] - b[:, 0]))
    if wide.size:
        i = int(wide[0])
        raise ValueError(f"bounds[{i}]=({b[i, 0]}, {b[i, 1]}): high - low overflows a float; give a narrower range "
                         "(or a log scale, with a named space's ne.Float(low, high, log=True))")
    bad = np.flatnonzero(b[:, 0] >= b[:, 1])
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"bounds[{i}]=({b[i, 0]}, {b[i, 1]}): low must be smaller than high{hint}")
    return b


class Box:
    """A box of ``(low, high)`` bounds and the affine map between it and the unit cube."""

    def __init__(self, bounds: Sequence[Sequence[float]]):
        self.bounds = check_bounds(bounds)

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return self.bounds.shape[0]

    def to_native(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube points [..., n] in the user's coordinates, never outside the bounds."""
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return np.clip(lo + np.asarray(u) * (hi - lo), lo, hi)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Points [..., n] in the user's coordinates as unit-cube points."""
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return (np.asarray(x, dtype=float) - lo) / (hi - lo)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """A unit-cube point as it will be evaluated: for a box, itself."""
        return u

    def present(self, X: np.ndarray) -> np.ndarray:
        """Points in the user's coordinates as the user gets them: for a box, the array."""
        return X

    def accept(self, X: Any) -> np.ndarray:
        """Points as the user hands them back, as an array [m, n] in the user's coordinates."""
        return np.atleast_2d(np.asarray(X, dtype=float))

    def frame(self, X: np.ndarray) -> pd.DataFrame:
        """Points [m, n] in the user's coordinates as history columns x0, x1, ..."""
        return pd.DataFrame(X, columns=[f"x{i}" for i in range(self.dim)])


def _numbers(values: Any, name: str) -> np.ndarray:
    """``values`` as floats, or a ValueError naming the parameter (a string where a number belongs)."""
    given = list(values) if isinstance(values, (list, tuple)) else np.ravel(np.asarray(values, dtype=object)).tolist()
    if any(isinstance(v, (str, bytes)) for v in given):
        raise ValueError(f"{name}={given[0] if len(given) == 1 else given!r}: not a number")
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r}: not a number") from None


@dataclass(frozen=True)
class Float:
    """A real parameter in [low, high]; ``log=True`` searches it on a log scale (low > 0)."""

    low: float
    high: float
    log: bool = False

    def check(self, name: str) -> None:
        """A ValueError naming the parameter if the range is unusable."""
        ok = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v)
                 for v in (self.low, self.high))
        if not ok or self.low >= self.high:
            raise ValueError(f"{name}: {self}: low and high must be finite numbers with low < high")
        with np.errstate(over="ignore"):
            if not np.isfinite(float(self.high) - float(self.low)):
                raise ValueError(f"{name}: {self}: high - low overflows a float; give a narrower range or log=True")
        if self.log and self.low <= 0:
            raise ValueError(f"{name}: {self}: a log scale needs low > 0")

    @property
    def width(self) -> int:
        """Unit-cube columns it takes."""
        return 1

    def _ends(self) -> tuple[float, float]:
        """The ends of the relaxed range its unit column spans (logarithms on a log scale)."""
        return (np.log(self.low), np.log(self.high)) if self.log else (self.low, self.high)

    def _relaxed(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self._ends()
        v = lo + np.clip(u[:, 0], 0.0, 1.0) * (hi - lo)
        return np.exp(v) if self.log else v

    def _unit(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self._ends()
        return (((np.log(values) if self.log else values) - lo) / (hi - lo))[:, None]

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Values [m] of its unit columns u [m, 1], to 15 significant digits: a value told (0.5) comes back as told,
        not as the last bits of its round trip through the unit cube (0.5000000000000002)."""
        v = np.clip(self._relaxed(u), self.low, self.high)
        return np.array([float(f"{a:.15g}") for a in v.tolist()]) if v.size else v

    def encode(self, values: np.ndarray, name: str) -> np.ndarray:
        """Its unit columns [m, 1] of values [m]; a value out of range is a ValueError naming ``name``."""
        values = _numbers(values, name)
        if not np.all((values >= self.low) & (values <= self.high)):
            raise ValueError(f"{name}={values.tolist()}: outside [{self.low}, {self.high}]")
        return self._unit(values)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Its unit columns [m, 1] moved to the encoding of the values they decode to."""
        return self._unit(self.decode(u))

    def native(self, value: Any) -> Any:
        """A decoded value as the objective gets it."""
        return float(value)


@dataclass(frozen=True)
class Int(Float):
    """A whole-number parameter in [low, high] (both included); ``log=True`` for ranges like 1 to 1024."""

    low: int
    high: int
    log: bool = False

    def check(self, name: str) -> None:
        """A ValueError naming the parameter if the range is unusable or not whole numbers."""
        super().check(name)
        if any(float(v) != int(v) for v in (self.low, self.high)):
            raise ValueError(f"{name}: {self}: low and high must be whole numbers")

    def _ends(self) -> tuple[float, float]:
        """Each whole number owns the stretch [k - 1/2, k + 1/2] of the relaxed range (of its log on a log scale)."""
        if self.log:
            return np.log(max(self.low - 0.5, self.low / 2)), np.log(self.high + 0.5)
        return self.low - 0.5, self.high + 0.5

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Whole values [m] of its unit column u [m, 1]: the relaxed value, rounded."""
        return np.clip(np.round(self._relaxed(u)), self.low, self.high)

    def encode(self, values: np.ndarray, name: str) -> np.ndarray:
        """Its unit column [m, 1] (the middle of each value's stretch); a value that is not a whole number in
        range is a ValueError naming ``name``."""
        values = _numbers(values, name)
        if not np.all((values >= self.low) & (values <= self.high) & (values == np.round(values))):
            raise ValueError(f"{name}={values.tolist()}: not a whole number in [{self.low}, {self.high}]")
        return self._unit(values)

    def native(self, value: Any) -> Any:
        """A decoded value as the objective gets it: a Python int."""
        return int(value)


@dataclass(frozen=True)
class Categorical:
    """A choice among ``choices`` (strings, numbers, booleans); searched as one unit column per choice."""

    choices: tuple

    def __init__(self, choices: Sequence[Any]):
        object.__setattr__(self, "choices", tuple(choices) if isinstance(choices, (list, tuple)) else choices)

    def check(self, name: str) -> None:
        """A ValueError naming the parameter if there is nothing to choose from."""
        if not isinstance(self.choices, tuple) or len(self.choices) == 0:
            raise ValueError(f"{name}: Categorical({self.choices!r}): give a non-empty list of choices")
        if any(isinstance(c, (float, np.floating)) and not np.isfinite(c) for c in self.choices):
            raise ValueError(f"{name}: Categorical({list(self.choices)!r}): a choice is NaN or infinite, which cannot "
                             "be told back and matched; use finite numbers or strings")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"{name}: Categorical({list(self.choices)!r}): the choices repeat")

    @property
    def width(self) -> int:
        """Unit-cube columns it takes: one per choice."""
        return len(self.choices)

    def decode(self, u: np.ndarray) -> np.ndarray:
        """Choice indices [m] of its unit columns u [m, k]."""
        return np.argmax(u, axis=1)  # indices; the relaxed one-hot is decided by its largest entry

    def encode(self, values: Any, name: str) -> np.ndarray:
        """One-hot columns [m, k] of choices; a value that is no choice is a ValueError naming ``name``."""
        index = []
        for v in values:
            hits = [i for i, c in enumerate(self.choices) if type(c) is type(v) and c == v] or \
                [i for i, c in enumerate(self.choices) if c == v]
            if not hits:
                raise ValueError(f"{name}={v!r}: not one of the choices {list(self.choices)}")
            index.append(hits[0])
        return np.eye(len(self.choices))[index]

    def native(self, index: Any) -> Any:
        """The choice a decoded index stands for."""
        return self.choices[int(index)]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Its unit columns [m, k] as the one-hot of the choice they decode to."""
        return np.eye(len(self.choices))[self.decode(u)]


Param = Float | Int | Categorical


class Space:
    """Named, typed parameters, searched in a unit cube: a real or integer parameter is one column (its
    log for a log scale; an integer relaxed and rounded when a point is proposed), a categorical one
    column per choice (decided by the largest). Proposals are snapped to what will be evaluated, so the
    pool holds exactly the points whose values it has."""

    def __init__(self, params: Mapping[str, Any]):
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"space={params!r}: give a dict of name -> ne.Float / ne.Int / ne.Categorical")
        self.params: dict[str, Any] = {}
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"space key {name!r}: a parameter's name must be a non-empty string")
            if not isinstance(p, (Float, Categorical)):
                raise ValueError(f"{name!r}: {p!r} is not a parameter; use ne.Float, ne.Int or ne.Categorical")
            p.check(name)
            self.params[name] = p
        widths = [p.width for p in self.params.values()]
        self.slices = dict(zip(self.params, (slice(a, a + w) for a, w in zip(np.cumsum([0, *widths]), widths))))
        self.dim = int(sum(widths))
        self.bounds = np.tile([0.0, 1.0], (self.dim, 1))

    def to_native(self, u: np.ndarray) -> np.ndarray:
        """The encoded points as evaluated (the array the optimizer matches told points against)."""
        return self.snap(np.asarray(u, dtype=float))

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Encoded points are unit-cube points."""
        return np.asarray(x, dtype=float)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube points [..., dim] moved to the encoding of the setting they decode to."""
        u = np.asarray(u, dtype=float)
        flat = u.reshape(-1, self.dim)
        return np.concatenate([p.snap(flat[:, self.slices[name]]) for name, p in self.params.items()],
                              axis=1).reshape(u.shape)

    def neighbours(self, u: np.ndarray) -> np.ndarray:
        """The encoded settings one discrete step from the snapped point u [dim]: each other choice of a
        categorical, an integer one up or down. Empty when the space has nothing discrete."""
        setting = self.present(self.snap(u)[None])[0]
        out = []
        for name, p in self.params.items():
            if isinstance(p, Categorical):
                steps = [c for c in p.choices if c != setting[name]]
            elif isinstance(p, Int):
                steps = [v for v in (setting[name] - 1, setting[name] + 1) if p.low <= v <= p.high]
            else:
                continue
            out += [{**setting, name: v} for v in steps]
        return self.accept(out) if out else np.empty((0, self.dim))

    def _decode_columns(self, U: np.ndarray) -> dict[str, np.ndarray]:
        return {name: p.decode(U[:, self.slices[name]]) for name, p in self.params.items()}


    def present(self, X: np.ndarray) -> list[dict[str, Any]]:
        """Encoded points [m, dim] as settings: one dict of native Python values each."""
        columns = self._decode_columns(np.atleast_2d(X))
        return [{name: p.native(columns[name][i]) for name, p in self.params.items()}
                for i in range(len(np.atleast_2d(X)))]

    def accept(self, P: Any) -> np.ndarray:
        """Settings (a dict, or a list of dicts) as encoded points [m, dim]; an unknown or missing name, or a value
        outside its parameter, is a ValueError naming it."""
        if isinstance(P, np.ndarray) and P.dtype != object:  # encoded points (what the loop and a replay tell)
            return np.atleast_2d(P.astype(float))
        settings = [P] if isinstance(P, Mapping) else list(P)
        for s in settings:
            if not isinstance(s, Mapping):
                raise ValueError(f"{s!r}: a setting is a dict of {list(self.params)}")
            missing, unknown = set(self.params) - set(s), set(s) - set(self.params)
            if missing or unknown:
                raise ValueError(f"setting {dict(s)!r}: " + (f"missing {sorted(missing)} " if missing else "")
                                 + (f"unknown {sorted(unknown)}" if unknown else ""))
        return np.concatenate([p.encode([s[name] for s in settings], name) for name, p in self.params.items()],
                              axis=1).astype(float)

    def frame(self, X: np.ndarray) -> pd.DataFrame:
        """Encoded points [m, dim] as history columns named by the parameters, in native values."""
        return pd.DataFrame(self.present(X) if len(X) else [], columns=list(self.params))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain values, for checkpoints."""
        return {name: {"type": type(p).__name__.lower(), **({"choices": list(p.choices)} if isinstance(p, Categorical)
                       else {"low": p.low, "high": p.high, "log": p.log})} for name, p in self.params.items()}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Mapping[str, Any]]) -> "Space":
        """The space ``to_dict`` described (also what a YAML space holds: type float / int / categorical)."""
        kinds = {"float": Float, "int": Int, "categorical": Categorical}
        params = {}
        for name, p in spec.items():
            p = dict(p)
            kind = p.pop("type", None)
            if kind not in kinds:
                raise ValueError(f"{name}: type {kind!r}: choose float, int or categorical")
            try:
                params[name] = kinds[kind](**p)
            except TypeError as err:
                raise ValueError(f"{name}: {err}") from None
        return cls(params)


def make_box(bounds: Any) -> "Box | Space":
    """A Space for a dict of named parameters (or a Space), else a Box for a sequence of (low, high) pairs."""
    if isinstance(bounds, Space):
        return bounds
    if isinstance(bounds, Mapping):
        return Space(bounds)
    return Box(bounds)
