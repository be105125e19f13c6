"""The request value: one coercion rule, one check per option, presets, and the schema that says the same thing.

No model is loaded here: these are the checks every front door (API, CLI, server) runs before any work."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from tango_rt.runtime.errors import InputError
from tango_rt.runtime.options import Option, default, plain
from tango_rt.runtime.presets import PRESETS
from tango_rt.runtime.request import INPUTS, OPTIONS, GenerationRequest, RequestOptions

NUMPY_VALUES = {  # the inconsistencies: numpy scalars and arrays, accepted by every option alike
    "steps": np.int64(5), "cache_interval": np.int32(4), "samples": np.uint8(2), "seed": np.int64(7),
    "guidance": np.float32(2.5), "duration": np.float32(5), "guidance_interval": np.array([0.5, 3.0], np.float32),
    "loop": np.bool_(True), "scheduler_options": {"use_karras_sigmas": np.bool_(True), "solver_order": np.int64(2)},
}


def test_numpy_scalars_and_arrays_follow_one_rule():
    request = GenerationRequest.build(["rain"], **NUMPY_VALUES)
    assert request.steps == 5 and type(request.steps) is int and request.cache_interval == 4
    assert request.guidance == 2.5 and type(request.duration) is float and request.loop is True
    assert request.guidance_interval == (0.5, 3.0) and request.samples == 2 and request.seed == 7
    assert request.sampler_options == {"use_karras_sigmas": True, "solver_order": 2}
    assert plain((np.float64(1.5), [np.int8(2)])) == [1.5, [2]]
    integral = GenerationRequest.build(["rain"], steps=5.0, cache_interval=np.float32(4))  # integers, as JSON reads
    assert integral.steps == 5 and type(integral.steps) is int and integral.cache_interval == 4


@pytest.mark.parametrize(("name", "value"), [
    ("steps", "5"), ("steps", 5.5), ("steps", True), ("cache_interval", np.float32(4.5)), ("guidance", "3"),
    ("guidance", np.bool_(True)), ("duration", float("nan")), ("loop", 1), ("guidance_interval", "0.5:3"),
    ("guidance_interval", [0.5]), ("scheduler", 3), ("samples", np.array([1, 2])), ("seed", 2**63),
])
def test_what_the_rule_does_not_convert_is_refused_naming_the_option(name, value):
    with pytest.raises(InputError, match=f"^{name} must be"):
        GenerationRequest.build(["rain"], **{name: value})


def test_the_drop_in_keywords_are_the_request_options():
    """RequestOptions (what an editor shows for generate's keywords) names every option and input but the
    positional ones, with nothing extra: the two cannot drift apart."""
    positional = {"steps", "guidance", "samples"}
    assert set(typing.get_type_hints(RequestOptions, include_extras=False, localns={
        "AudioLike": object, "np": np})) == set(OPTIONS) - positional | set(INPUTS)


def test_a_preset_fills_what_the_caller_left_out():
    turbo = GenerationRequest.build(["rain"], preset="turbo")
    assert turbo.values() == {**GenerationRequest.build(["rain"], **PRESETS["turbo"]).values(), "preset": "turbo"}
    assert GenerationRequest.build(["rain"], preset="turbo", steps=20).steps == 20
    assert GenerationRequest.build(["rain"], preset="turbo", steps=100).steps == 100  # written: wins
    assert GenerationRequest.build(["rain"], preset="turbo", steps=default(100)).steps == 15  # a signature default
    assert GenerationRequest.build(["rain"], preset="fast", cache_interval=2).plan.cache_interval == 2


def test_every_preset_names_options_only():
    for name, settings in PRESETS.items():
        assert set(settings) <= set(OPTIONS) - {"preset"}, name
        GenerationRequest.build(["rain"], **settings)  # and each value passes its option's check


@pytest.mark.parametrize(("values", "match"), [
    ({"strength": 0.5}, r"strength need\(s\) input audio"),
    ({"loop": True, "audio": b"x"}, "takes no input audio"),
    ({"audio": b"x", "duration": 2.0}, "duration is the input's own length"),
    ({"audio": b"x", "extend": 2.0, "strength": 0.5}, "takes no strength or inpaint"),
    ({"loop": True, "latents": np.zeros(1)}, "replay plain generations only"),
    ({"volume": 3}, r"unknown option\(s\) \['volume'\]"),
])
def test_options_that_do_not_go_together_are_refused(values, match):
    with pytest.raises(InputError, match=match):
        GenerationRequest.build(["rain"], **values)


def test_a_fresh_seed_survives_json_and_a_given_one_is_kept():
    fresh = {GenerationRequest.build(["x"]).seeded().seed for _ in range(200)}
    assert len(fresh) == 200 and all(0 <= s < 2**53 for s in fresh)  # exact as a JavaScript number
    assert max(fresh) > 2**50  # drawn from the whole safe range (all 200 below 2**50: odds 8**-200)
    given = GenerationRequest.build(["x"], seed=2**63 - 1)
    assert given.seeded() is given


def test_requests_compare_by_what_is_shared():
    a = GenerationRequest.build(["a"], seed=1, steps=4)
    b = GenerationRequest.build(["b", "c"], seed=2, samples=3, steps=4)
    assert a != b and a.shared() == b.shared() and hash(a.shared()) == hash(b.shared())
    assert a.shared() != GenerationRequest.build(["a"], steps=5).shared()


def _accepts(schema: dict, value) -> bool:
    """A small JSON Schema reader for the keywords Option.schema writes (independent of Option.check)."""
    if "anyOf" in schema:
        return any(_accepts(s, value) for s in schema["anyOf"])
    if "enum" in schema:
        return any(type(value) is type(c) and value == c for c in schema["enum"])
    kind = schema.get("type")
    checks = {"null": value is None, "boolean": isinstance(value, bool), "string": isinstance(value, str),
              "integer": (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
              and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool),
              "array": isinstance(value, list), "object": isinstance(value, dict)}
    if not checks[kind]:
        return False
    if kind in ("integer", "number"):
        return (value >= schema.get("minimum", -np.inf) and value > schema.get("exclusiveMinimum", -np.inf)
                and value <= schema.get("maximum", np.inf))
    if kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", np.inf):
            return False
        items = schema.get("prefixItems") or [schema.get("items", {})] * len(value)
        return all(_accepts(s, v) for s, v in zip(items, value, strict=False)) if items else True
    return True


EDGES = {
    "int": lambda o: [o.low, o.low - 1, o.high, (o.high or 0) + 1, 2.0, 2.5, True],
    "number": lambda o: [o.low, o.low + 1e-9, o.low - 1e-9, o.high, (o.high or 0) + 1e-6, "1", False],
    "choice": lambda o: [*o.choices, "nope", 1],
    "bool": lambda o: [True, False, 1, "true"],
    "pair": lambda o: [[o.low, o.high], [o.low - 1, o.high], [1.0], [1.0, 2.0, 3.0]],
}


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if o.kind in EDGES])
def test_the_schema_and_the_checks_agree_at_every_bound(name):
    """The server's document and the request's checks come from one declaration: at and beyond each bound they
    accept and refuse the same values (a cross-option rule, such as an interval's order, is the checks' alone)."""
    option: Option = OPTIONS[name]
    schema = option.schema()
    for value in EDGES[option.kind](option):
        if value is None:
            continue
        try:
            option.check(name, value)
            checked = True
        except InputError:
            checked = False
        assert checked == _accepts(schema, value), (name, value)
