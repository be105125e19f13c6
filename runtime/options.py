"""Typed, bounded options: one coercion rule, one check per kind, and the JSON schema that says the same thing.

Every value a user hands tango-rt (the API's keyword arguments, the CLI's flags, the server's JSON fields, the
sampler options inside them) goes through `Option.check`:

1. one coercion rule, `plain`: numpy scalars become the Python scalar they hold (np.int64(5) -> 5, np.float32(2.5)
   -> 2.5, np.bool_ -> bool), numpy arrays and tuples become lists; nothing else is converted (a string is never
   read as a number, a bool never as a number, and a float is an integer only when it is one, 2.0, as JSON Schema
   reads numbers);
2. the kind's strict check with its bounds, whose message names the option, the rule and the value given;
3. the option's `rule`, for what type and bounds cannot say (an interval's order, spans that overlap), kept in the
   home of the thing it checks.

`Option.schema` writes the same type and bounds as JSON Schema (the server's OpenAPI document), with an upper
bound lowered to a server's cap where it has one, so the document and the checks cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

KINDS = ("int", "number", "bool", "choice", "pair", "spans", "indices", "mapping", "text")


def plain(value: Any) -> Any:
    """The one coercion rule: numpy scalars -> Python scalars, numpy arrays and tuples -> lists (recursively)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class _DefaultInt(int):
    pass


class _DefaultFloat(float):
    pass


class _DefaultStr(str):
    __slots__ = ()


_DEFAULT_TYPES = {int: _DefaultInt, float: _DefaultFloat, str: _DefaultStr}


def default(value: int | float | str) -> Any:
    """`value`, marked as a signature's default: the drop-in methods keep the original's visible defaults
    (steps=100, guidance=3), and a preset must still tell those from a value the caller wrote (steps=100 given
    explicitly wins over a preset's 15). The mark is the type (an int subclass that prints as the int)."""
    return _DEFAULT_TYPES[type(value)](value)


def is_default(value: Any) -> bool:
    return type(value) in _DEFAULT_TYPES.values()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integral(value: Any) -> Any:
    """2.0 is an integer, as JSON (Schema) reads numbers; anything else is left as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Option:
    """One option: its kind, default, meaning and bounds (`low` inclusive unless `open_low`; `high` inclusive).

    kind: int | number | bool | choice (one of `choices`) | pair (two numbers) | spans (1 to `items` pairs) |
    indices (up to `items` integers) | mapping (`fields`, each an Option) | text (of `low` to `high` characters,
    matching the regular expression `pattern` somewhere).
    cap: the name of the server setting that is its upper bound there (serving/settings.py), if any.
    per_clip: may differ between the clips of one denoising call (a seed); else equal within a batch.
    rule: a check beyond type and bounds, given the checked value, returning it (or its normal form).
    required: None is refused (else None means "not given" for an option whose default is None).
    flag / metavar: the CLI's spelling where it is not --name / NAME."""

    kind: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple = ()
    items: int | None = None
    fields: Mapping[str, Option] = field(default_factory=dict)
    cap: str | None = None
    per_clip: bool = False
    rule: Callable[[Any], Any] | None = None
    pattern: str | None = None
    pattern_words: str = ""
    required: bool = False
    flag: str | None = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")

    # ---- checks -------------------------------------------------------------------------------------------------
    def check(self, name: str, value: Any) -> Any:
        """The value in its normal form (int, float, bool, str, tuples, a dict for a mapping), or an InputError."""
        value = plain(value)
        if value is None:
            if self.default is None and not self.required:
                return None
            raise InputError(f"{name} must be given ({self.describe()}), got None")
        checked = getattr(self, f"_check_{self.kind}")(name, value)
        return self.rule(checked) if self.rule is not None else checked

    def describe(self, high: float | None = None) -> str:
        """What the option takes, in words: the message of every refusal."""
        high = self.high if high is None else high
        if self.kind in ("int", "number"):
            noun = "an integer" if self.kind == "int" else "a finite number"
            return f"{noun} {self._range(high)}".rstrip()
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        pair = f"two finite numbers in [{_num(self.low)}, {_num(high)}]"
        if self.kind == "pair":
            return pair
        if self.kind == "spans":
            return f"a list of 1 to {self.items} (start, end) pairs, each {pair}"
        if self.kind == "indices":
            return f"a list of at most {self.items} integers in [{_num(self.low)}, {_num(high)})"
        if self.kind == "mapping":
            return f"a mapping with keys among {sorted(self.fields)}"
        length = f" of {_num(self.low or 0)} to {_num(high)} characters" if high is not None else ""
        return f"a string{length}" + (f" with {self.pattern_words or repr(self.pattern)}" if self.pattern else "")

    def _range(self, high: float | None) -> str:
        low = self.low
        if low is not None and high is not None:
            return f"in {'(' if self.open_low else '['}{_num(low)}, {_num(high)}]"
        if low is not None:
            return f"{'>' if self.open_low else '>='} {_num(low)}"
        return f"<= {_num(high)}" if high is not None else ""

    def _refuse(self, name: str, value: Any, what: str | None = None) -> InputError:
        return InputError(f"{name} must be {what or self.describe()}, got {value!r}")

    def _in_bounds(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def _check_int(self, name: str, value: Any) -> int:
        value = _integral(value)
        if not _is_int(value) or not self._in_bounds(value):
            raise self._refuse(name, value)
        return int(value)

    def _check_number(self, name: str, value: Any) -> float:
        if not _is_number(value) or not self._in_bounds(value):
            raise self._refuse(name, value)
        return float(value)

    def _check_bool(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._refuse(name, value)
        return value

    def _check_choice(self, name: str, value: Any) -> Any:
        for choice in self.choices:
            if isinstance(value, type(choice)) and type(value) is not bool and value == choice:
                return choice
        raise self._refuse(name, value)

    def _check_text(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not (self.low or 0) <= len(value) <= (self.high or math.inf) or (
                self.pattern and not re.search(self.pattern, value)):
            raise self._refuse(name, value if len(str(value)) < 80 else f"{str(value)[:60]}...")
        return str(value)

    def _check_pair(self, name: str, value: Any) -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2 or not all(
                _is_number(v) and self._in_bounds(v) for v in value):
            raise self._refuse(name, value, f"two finite numbers in [{_num(self.low)}, {_num(self.high)}]")
        return float(value[0]), float(value[1])

    def _check_spans(self, name: str, value: Any) -> tuple[tuple[float, float], ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= (self.items or math.inf):
            raise self._refuse(name, value)
        return tuple(self._check_pair(f"{name}[{i}]", span) for i, span in enumerate(value))

    def _check_indices(self, name: str, value: Any) -> tuple[int, ...]:
        value = [_integral(v) for v in value] if isinstance(value, list) else value
        if not isinstance(value, list) or len(value) > (self.items or math.inf) or not all(
                _is_int(v) and self.low <= v < self.high for v in value):
            raise self._refuse(name, value)
        return tuple(value)

    def _check_mapping(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._refuse(name, value)
        unknown = sorted((k for k in value if k not in self.fields), key=str)
        if unknown:
            raise InputError(f"unknown key(s) {unknown} in {name}; known: {sorted(self.fields)}")
        nulls = sorted(k for k, v in value.items() if v is None)
        if nulls:
            raise InputError(f"{name}: null is not a value of {nulls}; leave the key out")
        return {key: self.fields[key].check(f"{name}.{key}", v) for key, v in value.items()}

    # ---- JSON Schema --------------------------------------------------------------------------------------------
    def schema(self, high: float | None = None, nullable: bool = True, default: Any = None) -> dict[str, Any]:
        """This option as JSON Schema (OpenAPI 3.1), with `high` in place of its own upper bound (a server cap) and
        `default` in place of its own default; `nullable=False`: null is not a value (leave the field out)."""
        body = self._schema(self.high if high is None else high)
        default = self.default if default is None else default
        if default is not None:
            body["default"] = plain(default)
        elif nullable and not self.required:
            body = {"anyOf": [body, {"type": "null"}], "default": None}
        if self.help:
            body["description"] = self.help
        return body

    def _schema(self, high: float | None) -> dict[str, Any]:
        if self.kind in ("int", "number"):
            body: dict[str, Any] = {"type": "integer" if self.kind == "int" else "number"}
            if self.low is not None:
                body["exclusiveMinimum" if self.open_low else "minimum"] = self.low
            if high is not None:
                body["maximum"] = high
            return body
        if self.kind == "bool":
            return {"type": "boolean"}
        if self.kind == "choice":
            return {"enum": list(self.choices)}
        if self.kind == "text":
            body = {"type": "string", "minLength": int(self.low or 0)}
            if high is not None:
                body["maxLength"] = int(high)
            return {**body, "pattern": self.pattern} if self.pattern else body
        number = {"type": "number", "minimum": self.low, "maximum": high}
        pair = {"type": "array", "prefixItems": [number, number], "items": False, "minItems": 2, "maxItems": 2}
        if self.kind == "pair":
            return pair
        if self.kind == "spans":
            return {"type": "array", "items": pair, "minItems": 1, "maxItems": self.items}
        if self.kind == "indices":
            return {"type": "array", "maxItems": self.items,
                    "items": {"type": "integer", "minimum": self.low, "maximum": high - 1}}
        return {"type": "object", "additionalProperties": False,
                "properties": {key: option.schema(nullable=False) for key, option in self.fields.items()}}


def _num(value: float | None) -> str:
    if value is None:
        return "inf"
    return str(value) if isinstance(value, int) else f"{value:g}"
