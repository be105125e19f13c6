"""Writing exported model folders (export and build): the output folder, its manifest header, file entries and
progress lines. Reading them is the runtime's (runtime/artifacts.py), which never writes one."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runtime.artifacts import FORMAT, FORMAT_VERSION, MANIFEST
from ..runtime.errors import ArtifactError
from ..runtime.files import sha256_files


def log(message: str) -> None:
    """Progress of export and build, on stderr: stdout carries the command's result."""
    print(message, file=sys.stderr, flush=True)


def write_manifest(out: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Write out/manifest.json: the format header every reader checks, then `fields`; returns the manifest."""
    from tango_rt import __version__

    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "tango_rt_version": __version__,
                "created": now_utc(), **fields}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log(f"wrote {out / MANIFEST}")
    return manifest


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


OUTPUT_MARK = ".tango-rt-output"  # written first into every output folder, so --force knows a partial one is ours


def prepare_output_folder(out: Path, force: bool, inputs: Sequence[str | Path] = ()) -> None:
    """An empty folder to write an artifact into. An existing non-empty one is replaced only with force, and only
    if tango-rt wrote it (its manifest, or the mark a partial export leaves): --force must not delete a user's
    folder. Never the input itself or a folder holding it (`build --onnx X --out X --force`)."""
    target = out.expanduser().resolve()
    for source in inputs:
        where = Path(source).expanduser().resolve()
        if target == where or target in where.parents:
            raise ArtifactError(f"the output folder {out} would replace the input {source}: choose another --out")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ArtifactError(f"{out} exists and is not empty; pass --force to overwrite it")
        if not ((out / MANIFEST).is_file() or (out / OUTPUT_MARK).is_file()):
            raise ArtifactError(f"{out} is not a folder tango-rt wrote (no {MANIFEST}); --force replaces only "
                                "those: remove it yourself or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARK).touch()


def file_entry(root: Path, name: str) -> dict[str, Any]:
    """Size and digest of a file in the folder, for the manifest."""
    path = root / name
    return {"file": name, "size": path.stat().st_size, "sha256": sha256_files([path])}
