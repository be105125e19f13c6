"""The server's request: its fields, their checks and its OpenAPI document, from one set of declarations.

A request body holds one clip's GenerationRequest options (runtime/request.py, each declared once with its kind,
default and bounds) and the fields only the server has (`SERVER_FIELDS`: the prompt, the answer's format,
streaming, input audio as base64). `parse` checks a body with those declarations and the server's caps
(serving/settings.py: --max-steps, --max-duration, ...), and `request_schema` writes the same declarations and caps
as the JSON Schema of /openapi.json, so the document says what the server does, and a changed cap shows there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..runtime.audio import AUDIO_FORMATS
from ..runtime.errors import InputError
from ..runtime.options import Option
from ..runtime.request import OPTIONS, GenerationRequest
from .settings import Settings

SERVER_FIELDS: dict[str, Option] = {
    "prompt": Option("text", help="what the clip should sound like", low=1, pattern=r"\S", required=True,
                     pattern_words="a character other than white space",
                     cap="max_prompt_chars"),
    "response_format": Option("choice", "wav", "the answer's audio format (a stream: wav or pcm)",
                              choices=tuple(AUDIO_FORMATS)),
    "stream": Option("bool", False, "send a long clip (or an extension) window by window as it is made"),
    "audio": Option("text", None, "input audio file, base64 (or the multipart part `audio`)", low=4,
                    cap="max_audio_base64"),
}


class PromptTooLong(InputError):
    """A prompt past the server's cap: 413."""


@dataclass(frozen=True)
class Body:
    """A checked request body: the clip's options (for GenerationRequest.build) and the server's own fields."""

    options: dict[str, Any]
    prompt: str
    response_format: str
    stream: bool
    audio: str | None


def parse(fields: Any, settings: Settings) -> Body:
    """A body's fields checked: known names only, each field's kind and bounds, the server's caps (InputError:
    422, PromptTooLong: 413). Options relating to each other and to the model are checked when the request is built
    and prepared (serving/service.py)."""
    if not isinstance(fields, dict):
        raise InputError(f"the body must be a JSON object of request fields, got {type(fields).__name__}")
    unknown = sorted(set(fields) - set(OPTIONS) - set(SERVER_FIELDS), key=str)
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; known: {sorted({*OPTIONS, *SERVER_FIELDS})}")
    prompt = fields.get("prompt")
    if isinstance(prompt, str) and len(prompt) > settings.max_prompt_chars:
        raise PromptTooLong(f"prompt has {len(prompt)} characters; this server takes at most "
                            f"{settings.max_prompt_chars}")
    own = {name: option.check(name, fields.get(name, option.default))
           for name, option in SERVER_FIELDS.items()}
    options = {name: OPTIONS[name].check(name, value) for name, value in fields.items() if name in OPTIONS}
    return Body(options, **own)


def check_caps(request: GenerationRequest, settings: Settings, default_seconds: float) -> None:
    """The server's caps on a built request, each an InputError naming the field and the cap. The audio made per
    request is bounded by max_duration_s: a clip's duration (`default_seconds` when none is given), or the seconds
    an extension adds; an edit keeps its input's length (bounded by max_audio_s)."""
    for name, option in OPTIONS.items():
        value = getattr(request, name)
        if option.cap is not None and value is not None and value > settings.cap(option.cap):
            raise InputError(f"{name}={value:g} is more than this server takes per request "
                             f"({option.cap} {settings.cap(option.cap):g})")
    if request.audio is None and request.duration is None and default_seconds > settings.max_duration_s:
        raise InputError(f"duration {default_seconds:.2f} s (the default) is longer than this server makes per "
                         f"request (max_duration_s {settings.max_duration_s:g})")


def request_schema(settings: Settings) -> dict[str, Any]:
    """GenerateRequest as JSON Schema (OpenAPI 3.1): every field with its bounds, the caps of `settings`."""
    fields = {**SERVER_FIELDS, **OPTIONS}
    properties = {name: option.schema(_high(option, settings)) for name, option in fields.items()}
    if settings.max_audio_bytes <= 0:
        properties["audio"] = {"type": "null", "description": "audio input is turned off on this server"}
    return {
        "title": "GenerateRequest",
        "type": "object",
        "description": "One clip's settings (defaults as Tango.generate: 100 DDPM steps, guidance 3, one 10.24 s "
                       "clip, a fresh seed). With `audio`: a variation (`strength`), spans regenerated (`inpaint`) "
                       "or a continuation (`extend`); `loop` makes a seamless loop. `strength`, `inpaint` and "
                       "`extend` need `audio`; `extend` takes no `strength` or `inpaint`; `loop` and `duration` "
                       "take no `audio`.",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
        "dependentRequired": {name: ["audio"] for name in ("strength", "inpaint", "extend")},
    }


def _high(option: Option, settings: Settings) -> float | None:
    if option.cap is None:
        return None
    cap = settings.cap(option.cap)
    return cap if option.high is None else min(option.high, cap)
