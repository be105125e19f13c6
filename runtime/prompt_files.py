"""Prompt files: a library of clips from one file of prompts (`tango-rt generate --prompts FILE`).

The file is plain text (one prompt a line; empty lines and lines starting with # are skipped), CSV (a `prompt`
column, optional `name`, `seed`, `duration`, `preset` and any other generation option as columns; empty cells
are left out) or JSON Lines (one object a line, the same keys). Each row becomes a clip in the output folder,
named from its `name` (or its prompt) and its seed, with a line in `manifest.jsonl`: the file, the row's line, the
prompt, every setting (the same settings the file itself carries: runtime/metadata.py) and the seconds it took.

A row whose options are bad is reported with its line number and the others go on; rows already in the manifest
(the same line, prompt and options) are skipped, so a run that was interrupted resumes where it stopped, unless
`overwrite`. Rows that share every setting but prompt and seed are generated together, `batch_size` at a time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .request import OPTIONS, GenerationRequest

MANIFEST = "manifest.jsonl"
SUFFIXES = {".txt": "text", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class Row:
    """One row of a prompt file: where it was, its prompt, its name and its options as given."""

    line: int
    prompt: str
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """What makes two rows the same clip to make (the resume check): line, prompt, name and options."""
        text = json.dumps([self.line, self.prompt, self.name, self.options], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_rows(path: str | Path, option: str = "--prompts") -> tuple[list[Row], list[tuple[int, str]]]:
    """The rows of a prompt file, and (line, problem) for the rows that cannot be read (the others go on).
    `option` is the command-line flag that named the file, for the messages."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower(), "text")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{option} {path}: cannot read it ({exc})") from None
    rows, problems = [], []
    for line, fields in _records(text, kind):
        try:
            rows.append(_row(line, fields))
        except InputError as exc:
            problems.append((line, str(exc)))
    if not rows and not problems:
        raise InputError(f"{option} {path}: holds no prompts")
    return rows, problems


def _records(text: str, kind: str) -> Iterator[tuple[int, Any]]:
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise InputError(f"a CSV prompt file needs a `prompt` column, got {reader.fieldnames}")
        for record in reader:
            yield reader.line_num, {k: _cell(v) for k, v in record.items() if k and v not in (None, "")}
        return
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if kind == "text":
            yield number, {"prompt": line}
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, InputError(f"not JSON ({exc.msg})")


def _cell(text: str) -> Any:
    """A CSV cell: the JSON it holds where it holds JSON (numbers, true, lists), else its text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _row(line: int, fields: Any) -> Row:
    if isinstance(fields, Exception):
        raise fields
    if not isinstance(fields, dict):
        raise InputError(f"a row must be an object with a `prompt`, got {type(fields).__name__}")
    fields = dict(fields)
    prompt, name = fields.pop("prompt", None), fields.pop("name", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"a row needs a non-empty `prompt`, got {prompt!r}")
    if name is not None and not isinstance(name, str):
        raise InputError(f"name must be text, got {name!r}")
    unknown = sorted(set(fields) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown column(s) {unknown}; known: prompt, name, {', '.join(sorted(OPTIONS))}")
    GenerationRequest.build([prompt], **fields)  # the row's options, checked now: a bad row is reported alone
    return Row(line, prompt, name, fields)


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "clip"


def clip_file(row: Row, seed: int, suffix: str = ".wav") -> str:
    """A clip's file name: from its name (or prompt) and its seed, with its line so that equal prompts differ."""
    return f"{slug(row.name or row.prompt)}_l{row.line}_s{seed}{suffix}"


def done_keys(folder: Path) -> set[str]:
    """The rows the manifest already holds (a rerun skips them)."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return set()
    keys = set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by an interruption: that row is made again
            continue
        if (folder / entry.get("file", "")).exists():
            keys.add(entry.get("key"))
    return keys


def request_of(row: Row, defaults: dict[str, Any]) -> GenerationRequest:
    """The row's request: its options over the command line's (`defaults`); a fresh seed when none is given."""
    return GenerationRequest.build([row.prompt], explicit=list(row.options), **{**defaults, **row.options}).seeded()
