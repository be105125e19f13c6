"""`tango-rt generate`: clips from prompts on the command line, from a prompt file, or made again from a file's
settings; every file written carries its settings (runtime/metadata.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runtime.errors import InputError, TangoError, warn
from .runtime.metadata import clip_settings, file_sha256, read_settings
from .runtime.noise import row_generators
from .runtime.prompt_files import MANIFEST, Row, clip_file, done_keys, read_rows, request_of
from .runtime.request import GenerationRequest


def input_digest(audio: str | None) -> str | None:
    return file_sha256(Path(audio).read_bytes()) if audio else None


def write_clips(tango: Any, request: GenerationRequest, paths: Sequence[Path], *, quiet: bool = False,
                batch_size: int | None = None, streams: list | None = None,
                overrides: Sequence[dict] | None = None) -> list[Path]:
    """The request's clips written to `paths` (one per row) with their settings; a long clip or an extension is
    written window by window as it is made (unless its loudness needs the whole clip). `streams` / `overrides`:
    each row's own random stream and what its settings say instead of the request's (its seed, its row), where a
    call joins clips of several seeds or makes one row of another call again."""
    from .runtime.audio import AudioStreamWriter, write_audio

    identity, digest = tango.identity(), input_digest(request.audio if isinstance(request.audio, str) else None)
    rate = tango.sample_rate
    prepared = tango.runner.prepare(request)

    def settings(row: int, gain: float | None = None) -> dict:
        return clip_settings(request, row, identity, gain, digest) | (overrides[row] if overrides else {})

    if prepared.windowed and request.loudness is None:
        writers = [AudioStreamWriter(path, rate, settings(row)) for row, path in enumerate(paths)]
        try:
            for segments in tango.runner.segments(prepared, streams, progress=not quiet):
                for row, segment in segments.items():
                    writers[row].write(segment)
        finally:
            for writer in writers:
                writer.close()
        return list(paths)
    rendered = tango.runner.render(prepared, streams, progress=not quiet, batch_size=batch_size)
    return [write_audio(path, clip, rate, settings(row, gain))
            for row, (path, clip, gain) in enumerate(zip(paths, rendered.clips, rendered.gains_db, strict=True))]


def replay(tango_of, path: str, out: Path, model: str | None, audio: str | None) -> Path:
    """The clip of a file's settings made again: its prompt, seed and row, every option; bit for bit on the same
    backend and machine when its call held one prompt (a clip batched with other prompts differs by kernel
    rounding only). Warns where what is loaded or given differs from what made it (model digest, backends, input
    audio)."""
    settings = read_settings(path)
    options, row = dict(settings["options"]), int(settings["row"])
    request = GenerationRequest.build([settings["prompt"]], explicit=list(options), **options, audio=audio)
    made_by = settings.get("model", {})
    tango = tango_of(model or made_by.get("id"))
    now = tango.identity()
    if made_by.get("digest") != now["digest"]:
        warn(f"{path} was made by model digest {made_by.get('digest')}; this one is {now['digest']}: "
             "the clip will differ")
    if made_by.get("backends") != now["backends"]:
        warn(f"{path} was made on {made_by.get('backends')}; replaying on {now['backends']} differs by the "
             "backends' rounding")
    if settings.get("input_sha256") != input_digest(audio):
        warn(f"{path} was made from input audio {settings.get('input_sha256')}; --audio gives "
             f"{input_digest(audio)}")
    # the clip's call again, its prompt's rows only (its samples in one batch, as made): row r of them is the clip
    first = row - row % request.samples
    streams = row_generators(request.seed, first + request.samples)[first:]
    paths = [out.with_name(f"{out.stem}.row{k}{out.suffix}") for k in range(request.samples)]
    written = write_clips(tango, request, paths, quiet=True, streams=streams,
                          overrides=[{"row": first + k} for k in range(request.samples)])
    for other in written:
        if other != written[row - first]:
            other.unlink()
    return written[row - first].replace(out)


def from_prompt_file(tango_of, path: str, folder: Path, defaults: dict, *, batch_size: int, overwrite: bool,
                     quiet: bool) -> int:
    """Every row of a prompt file into `folder` with `manifest.jsonl`; 0 when every row was made, else 1."""
    from tqdm.auto import tqdm

    rows, problems = read_rows(path)
    folder.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (folder / MANIFEST).unlink(missing_ok=True)
    done = done_keys(folder)
    todo, skipped = [], len(rows)
    for row in rows:
        if row.key() in done:
            continue
        skipped -= 1
        try:
            todo.append((row, request_of(row, defaults)))
        except InputError as exc:  # the row with the command line's options
            problems.append((row.line, str(exc)))
    for line, problem in sorted(problems):
        print(f"tango-rt: {path}:{line}: {problem}", file=sys.stderr)
    failed = len(problems)
    tango = tango_of(None) if todo else None
    with tqdm(total=len(todo), unit="row", disable=quiet, desc="prompts") as bar, \
            (folder / MANIFEST).open("a", encoding="utf-8") as manifest:
        for group in _groups(todo, batch_size):
            failed += _make_group(tango, group, folder, manifest, path)
            bar.update(len(group))
    print(f"{len(todo) - failed + len(problems)} made, {skipped} already there, {failed} failed: "
          f"{folder / MANIFEST}")
    return 1 if failed else 0


def _groups(requests: list[tuple[Row, GenerationRequest]], batch_size: int):
    """(row, request) groups of consecutive rows that can share a denoising call, at most batch_size each."""
    def key(pair: tuple[Row, GenerationRequest]) -> tuple:
        request = pair[1]  # what a combined call shares: all but prompt and seed
        return request.shared(), request.samples, request.loudness, request.peak

    for _, same in itertools.groupby(requests, key=key):
        same = list(same)
        for start in range(0, len(same), batch_size):
            yield same[start : start + batch_size]


def _make_group(tango: Any, group: list, folder: Path, manifest, source: str) -> int:
    """One call for a group of rows; each clip written and logged as it is done. Returns how many rows failed."""
    first = group[0][1]
    request = dataclasses.replace(first, prompts=tuple(row.prompt for row, _ in group))
    streams = [g for _, r in group for g in row_generators(r.seed, r.samples)]
    paths = [folder / (clip_file(row, r.seed)[:-4] + (f"_{k}" if r.samples > 1 else "") + ".wav")
             for row, r in group for k in range(r.samples)]
    overrides = [{"seed": r.seed, "row": k} for _, r in group for k in range(r.samples)]
    started = time.perf_counter()
    try:
        written = write_clips(tango, request, paths, quiet=True, streams=streams, overrides=overrides)
    except TangoError as exc:
        for row, _ in group:
            print(f"tango-rt: {source}:{row.line}: {exc}", file=sys.stderr)
        return len(group)
    seconds = (time.perf_counter() - started) / len(written)
    paths_of = iter(written)
    for row, r in group:
        for _ in range(r.samples):
            file = next(paths_of)
            entry = {"file": file.name, "line": row.line, "key": row.key(), "prompt": row.prompt, "name": row.name,
                     "seed": r.seed, "seconds": round(seconds, 3), "settings": read_settings(file)}
            manifest.write(json.dumps(entry) + "\n")
    manifest.flush()
    return 0


def clip_info(path: str) -> str:
    """`tango-rt info --clip FILE`: the settings a file carries."""
    return json.dumps(read_settings(path), indent=2)


def check_sources(prompts: Sequence[str], prompt_file: str | None, replay_file: str | None) -> None:
    given = [name for name, value in (("prompts", prompts), ("--prompts FILE", prompt_file),
                                      ("--replay FILE", replay_file)) if value]
    if len(given) != 1:
        raise InputError("give prompts, --prompts FILE or --replay FILE (one of them)" if not given else
                         f"give one of prompts, --prompts FILE and --replay FILE, not {' and '.join(given)}")
