"""The server's request: its fields, their checks and their JSON Schema, from one set of declarations.

A request body holds one clip's GenerationRequest options (runtime/request.py, each declared once with its kind,
default and bounds) and the fields only the server has (`SERVER_FIELDS`: the prompt, the answer's format,
streaming, input audio as base64). `parse` checks a body with those declarations and the server's caps
(serving/settings.py: --max-steps, --max-duration, ...); `request_schema` writes the same declarations, the caps as
upper bounds, the server's own defaults (`serve --preset`) and the rules between fields that JSON Schema can state
(what needs `audio`, what a stream takes), so /openapi.json says what the server does and a changed cap shows
there. What JSON Schema cannot state (an interval's order, spans that overlap, audio that does not decode, a
guidance interval that holds none of a run's steps) is listed in `UNSTATED_RULES`, which the 422 answer's
description quotes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..runtime.audio import AUDIO_FORMATS
from ..runtime.editing.geometry import LOOP_CROSSFADE_S
from ..runtime.errors import InputError
from ..runtime.options import Option
from ..runtime.presets import PRESETS
from ..runtime.request import OPTIONS, GenerationRequest
from .settings import Settings

STREAM_FORMATS = ("wav", "pcm")  # what can be sent as it is made (a FLAC's header needs the whole file)
SERVER_FIELDS: dict[str, Option] = {
    "prompt": Option("text", help="what the clip should sound like", low=1, pattern=r"\S", required=True,
                     pattern_words="a character other than white space", cap="max_prompt_chars"),
    "response_format": Option("choice", "wav", "the answer's audio format (a stream: wav or pcm)",
                              choices=tuple(AUDIO_FORMATS)),
    "stream": Option("bool", False, "send a long clip (or an extension) window by window as it is made"),
    "audio": Option("text", None, "input audio file, base64 (or the multipart part `audio`)", low=4,
                    cap="max_audio_base64"),
}
# The rules a schema-valid request can still break (422), each as the words its error message holds.
UNSTATED_RULES = {
    "an interval's low must lie below its high": "must have 0 <= low < high",
    "a guidance interval must hold one of the run's noise levels": "holds none of this run's noise levels",
    "inpainted spans must not be empty, overlap or end after the input": ("is empty or starts before 0", "overlap",
                                                                          "ends after the audio"),
    "sigma_min must lie below sigma_max": "must be below sigma_max",
    "a sampler supports only its own option values": "is not supported",
    "input audio must decode, hold sound and fit the caps": ("not base64", "cannot read", "the audio is silent",
                                                             "the audio is empty", "is longer than the",
                                                             "too short to extend"),
    "a loop must fit twice in one UNet pass": "needs",
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
    """A body's fields checked: known names only, no nulls (leave a field out instead), the server's own fields'
    kinds and bounds (InputError: 422; PromptTooLong: 413). The options, the caps, the rules between options and
    what the model can make are checked when the request is built and prepared (serving/service.py)."""
    if not isinstance(fields, dict):
        raise InputError(f"the body must be a JSON object of request fields, got {type(fields).__name__}")
    unknown = sorted(set(fields) - set(OPTIONS) - set(SERVER_FIELDS), key=str)
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; known: {sorted({*OPTIONS, *SERVER_FIELDS})}")
    nulls = sorted(name for name, value in fields.items() if value is None)
    if nulls:
        raise InputError(f"{', '.join(nulls)}: null is not a value; leave the field out for its default")
    prompt = fields.get("prompt")
    if isinstance(prompt, str) and len(prompt) > settings.max_prompt_chars:
        raise PromptTooLong(f"prompt has {len(prompt)} characters; this server takes at most "
                            f"{settings.max_prompt_chars}")
    own = {name: option.check(name, fields.get(name, option.default)) for name, option in SERVER_FIELDS.items()}
    return Body({name: value for name, value in fields.items() if name in OPTIONS}, **own)


def form_value(name: str, text: str) -> Any:
    """A multipart form field's value: the text itself for a string field (a prompt, a choice), else the JSON it
    holds (a number, true, a list of spans: the document's `encoding` says application/json for those)."""
    option = {**SERVER_FIELDS, **OPTIONS}.get(name)
    if option is None or (option.kind in ("text", "choice") and all(isinstance(c, str) for c in option.choices)):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{name}: the form field holds {text[:40]!r}, not a JSON value") from None


def multipart_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request as multipart/form-data: the same fields and rules, `audio` a file part; and the `encoding` that
    says which fields hold JSON text."""
    properties = {**schema["properties"]}
    if "audio" in properties:
        properties["audio"] = {"type": "string", "format": "binary", "description": "the input audio file"}
    encoding = {name: {"contentType": "application/json"} for name, field in properties.items()
                if name != "audio" and "string" not in str(field.get("type", "")) and "enum" not in field}
    return {**schema, "title": "GenerateUpload", "properties": properties}, encoding


def defaults(settings: Settings) -> dict[str, Any]:
    """The server's defaults for options a body leaves out: its preset's settings (`serve --preset`), else none
    (the request's own defaults, the original's)."""
    if settings.preset is None:
        return {}
    return {**PRESETS[settings.preset], "preset": settings.preset}


def request(body: Body, settings: Settings, audio: Any = None) -> GenerationRequest:
    """The body's request: what it gives, then its preset's settings, then the server's defaults."""
    return GenerationRequest.build([body.prompt], explicit=list(body.options),
                                   **{**defaults(settings), **body.options}, audio=audio)


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


def request_schema(settings: Settings, default_seconds: float) -> dict[str, Any]:
    """GenerateRequest as JSON Schema (OpenAPI 3.1): every field with its bounds and the server's caps and
    defaults, what must be given where a default is past a cap, and the rules between fields JSON Schema states."""
    given = defaults(settings)
    fields = {**SERVER_FIELDS, **OPTIONS}
    properties = {name: option.schema(_high(option, settings), nullable=False, default=given.get(name))
                  for name, option in fields.items()}
    required = ["prompt"]
    for name, option in OPTIONS.items():  # a default past the server's cap: the field must be given
        default = given.get(name, option.default)
        if option.cap is not None and default is not None and default > settings.cap(option.cap):
            required.append(name)
            properties[name].pop("default", None)
    audio = settings.max_audio_bytes > 0
    rules = [_stream_rules(audio), _loop_rule()] + ([_audio_rules()] if audio else [])
    if default_seconds > settings.max_duration_s:  # text alone then needs its duration
        if audio:
            rules.append({"if": {"not": {"required": ["audio"]}}, "then": {"required": ["duration"]}})
        else:
            required.append("duration")
    if not audio:
        for name in ("audio", "strength", "inpaint", "extend"):  # nothing to edit without input audio
            properties.pop(name)
    schema = {
        "title": "GenerateRequest", "type": "object", "properties": properties, "required": required,
        "additionalProperties": False, "allOf": rules,
        "description": "One clip's settings; a field left out takes its default (this server's preset, else the "
                       "original's: 100 DDPM steps, guidance 3, one 10.24 s clip, a fresh seed). With `audio`: a "
                       "variation (`strength`), spans regenerated (`inpaint`) or a continuation (`extend`); "
                       "`loop` makes a seamless loop. Beyond this schema, a request must keep these rules (else "
                       "422): " + "; ".join(UNSTATED_RULES) + ".",
    }
    if audio:
        schema["dependentRequired"] = {name: ["audio"] for name in ("strength", "inpaint", "extend")}
    return schema


def _stream_rules(audio: bool) -> dict[str, Any]:
    """A stream sends one clip, as WAV or PCM, of long-form text or an extension."""
    then: dict[str, Any] = {"properties": {"response_format": {"enum": list(STREAM_FORMATS)}, "samples": {"const": 1},
                                           "loop": {"const": False}}}
    if audio:
        then["dependentRequired"] = {"audio": ["extend"]}
    return {"if": {"properties": {"stream": {"const": True}}, "required": ["stream"]}, "then": then}


def _audio_rules() -> dict[str, Any]:
    """With audio: no loop, no duration (the input's own); an extension takes no strength or spans."""
    return {"if": {"required": ["audio"]},
            "then": {"properties": {"loop": {"const": False}}, "not": {"required": ["duration"]},
                     "dependentSchemas": {"extend": {"not": {"anyOf": [{"required": ["strength"]},
                                                                       {"required": ["inpaint"]}]}}}}}


def _loop_rule() -> dict[str, Any]:
    """A loop lasts at least two crossfades."""
    return {"if": {"properties": {"loop": {"const": True}}, "required": ["loop"]},
            "then": {"properties": {"duration": {"minimum": 2 * LOOP_CROSSFADE_S}}}}


def _high(option: Option, settings: Settings) -> float | None:
    if option.cap is None:
        return None
    cap = settings.cap(option.cap)
    return cap if option.high is None else min(option.high, cap)
