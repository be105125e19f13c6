"""Settings inside every file tango-rt writes: how a clip was made, readable by common tools, enough to make it again.

A clip's settings are a JSON object (`clip_settings`): tango-rt's version, the prompt, the seed and the clip's row
among the call's clips (row r draws from the r-th child of the seed: runtime/noise.py), every request option
(runtime/request.py), the model (id or folder, a digest of what was loaded, backend and precision per network),
the loudness gain applied, and for an edit the input's SHA-256. They travel as the standard tags common tools read:

- WAV: a LIST/INFO chunk (INAM = the prompt, ICMT = the settings JSON, ISFT = "tango-rt <version>"), which
  ffprobe, sox's soxi, soundfile and most audio editors show;
- FLAC: Vorbis comments (TITLE, COMMENT, SOFTWARE), the same way.

`read_settings` reads them back (`tango-rt info --clip FILE`), and `tango-rt generate --replay FILE` rebuilds the
request: the same clip, bit for bit on the same backend and machine when it was made alone (a clip made in a batch
of other prompts differs by its kernel rounding only); a different model digest is warned about.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

from .errors import InputError

TAGS = {"title": b"INAM", "comment": b"ICMT", "software": b"ISFT"}  # soundfile's names -> RIFF INFO ids


def version() -> str:
    from tango_rt import __version__

    return __version__


def clip_settings(request: Any, row: int, model: dict, gain_db: float | None = None,
                  input_sha256: str | None = None) -> dict[str, Any]:
    """The settings of clip `row` of `request` (prompt-major: row r is prompt r // samples)."""
    settings = {"tango_rt": version(), "prompt": request.rows[row], "seed": request.seed, "row": row,
                "options": {k: v for k, v in request.values().items() if v is not None}, "model": model}
    if gain_db is not None:
        settings["loudness_gain_db"] = round(gain_db, 3)
    if input_sha256 is not None:
        settings["input_sha256"] = input_sha256
    return settings


def tags(settings: dict[str, Any]) -> dict[str, str]:
    """The file tags of a clip's settings (soundfile's string names)."""
    return {"title": settings["prompt"][:200], "comment": json.dumps(settings, separators=(",", ":")),
            "software": f"tango-rt {settings['tango_rt']}"}


def wav_info_chunk(settings: dict[str, Any]) -> bytes:
    """A RIFF LIST/INFO chunk holding a clip's tags: what a streamed WAV appends after its samples (its header,
    sent first, counts it in the RIFF size)."""
    body = b"INFO"
    for name, value in tags(settings).items():
        text = value.encode("utf-8") + b"\0"
        body += TAGS[name] + struct.pack("<I", len(text)) + text + (b"\0" if len(text) % 2 else b"")
    return b"LIST" + struct.pack("<I", len(body)) + body


def read_settings(path: str | Path | io.BytesIO) -> dict[str, Any]:
    """The settings tango-rt wrote into an audio file, or its bytes (InputError when it holds none)."""
    import soundfile

    try:
        with soundfile.SoundFile(path if isinstance(path, io.BytesIO) else str(path)) as audio:
            comment = audio.comment
    except Exception as exc:  # soundfile raises its own errors for unreadable files
        raise InputError(f"{path}: cannot read it as audio ({exc})") from None
    try:
        settings = json.loads(comment)
    except (json.JSONDecodeError, TypeError):
        raise InputError(f"{path}: holds no tango-rt settings (its comment tag is {comment[:60]!r})") from None
    if not isinstance(settings, dict) or "tango_rt" not in settings:
        raise InputError(f"{path}: its comment tag holds no tango-rt settings")
    return settings


def file_sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
