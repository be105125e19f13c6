"""Property-based fuzzing of the HTTP API against its own OpenAPI schema, on a real server process on loopback.

Bodies come from two strategies: documents valid under the schema's GenerateRequest (`from_schema`, a small
JSON-schema-to-hypothesis translation of what the schema uses: hypothesis-jsonschema 0.23 breaks on current
hypothesis), so deep paths are reached (sampler options, durations, formats), and arbitrary JSON with odd headers.
Property: no 5xx, every answer a JSON error or audio, and the server alive and ready afterwards. Bounded:
FUZZ_EXAMPLES bodies per strategy, each request under the server's small caps (3 steps, 1.5 s clips) and a 10 s
client timeout."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

from serving_helpers import ServerProcess  # noqa: E402

FUZZ_EXAMPLES = 60
TRIED: list[int] = []  # the status of every request sent


@pytest.fixture(scope="module")
def fuzzed():
    srv = ServerProcess("--max-steps", "3", "--max-duration", "1.5", "--max-samples", "2", "--timeout", "10",
                        "--max-queue", "4", "--max-body-bytes", "8192")
    try:
        srv.wait_ready()
        yield srv
        assert srv.client.get("/health/live").status_code == 200
        assert srv.client.get("/health/ready").status_code == 200
        counts = {code: TRIED.count(code) for code in sorted(set(TRIED))}
        print(f"fuzzing sent {len(TRIED)} requests; statuses {counts}")
    finally:
        srv.terminate()


def _request_schema(srv) -> dict:
    """GenerateRequest from the server's own /openapi.json, its $refs resolved inline."""
    spec = srv.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/audio/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(body)


def from_schema(node: dict):
    """Values valid under `node`: the subset of JSON schema FastAPI writes for GenerateRequest."""
    if "anyOf" in node:
        return st.one_of([from_schema(option) for option in node["anyOf"]])
    if "enum" in node or "const" in node:
        return st.sampled_from(node.get("enum", [node.get("const")]))
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(min_size=node.get("minLength", 0), max_size=min(node.get("maxLength", 60), 60))
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum", -(2**63)) + (1 if "exclusiveMinimum" in node else 0))
        high = node.get("maximum", node.get("exclusiveMaximum", 2**63) - (1 if "exclusiveMaximum" in node else 0))
        return st.integers(low, high)
    if kind == "number":
        return st.floats(node.get("minimum", node.get("exclusiveMinimum")), node.get("maximum"),
                         exclude_min="exclusiveMinimum" in node, allow_nan=False, allow_infinity=False)
    if kind == "object":
        props = node.get("properties", {})
        required = set(node.get("required", []))
        values = from_schema(node["additionalProperties"]) if isinstance(node.get("additionalProperties"), dict) \
            else JSON
        if not props:
            return st.dictionaries(st.text(max_size=20), values, max_size=4)
        return st.fixed_dictionaries({k: from_schema(v) for k, v in props.items() if k in required},
                                     optional={k: from_schema(v) for k, v in props.items() if k not in required})
    return JSON


def _check(srv, response: httpx.Response) -> None:
    TRIED.append(response.status_code)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message"}
    else:
        assert response.headers["content-type"].startswith(("audio/", "application/json"))


def _json(floats) -> st.SearchStrategy:
    return st.recursive(st.none() | st.booleans() | st.integers() | floats | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                     max_size=4), max_leaves=12)


JSON = _json(st.floats(allow_nan=False, allow_infinity=False))  # what json= can send
ANY_JSON = _json(st.floats())  # NaN and Infinity too, written as the non-standard tokens
SETTINGS = hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                               suppress_health_check=list(hypothesis.HealthCheck))


def test_schema_valid_bodies_never_get_a_5xx(fuzzed):
    schema = _request_schema(fuzzed)

    small = {"steps": st.integers(1, 4), "duration": st.floats(0.1, 2.0), "samples": st.just(1),
             "scheduler_options": st.none() | st.fixed_dictionaries({}, optional={
                 "use_karras_sigmas": st.booleans(), "timestep_spacing": st.sampled_from(["leading", "trailing"])}),
             "prompt": st.text(min_size=1, max_size=40).filter(str.strip)}  # often inside the caps: deeper paths

    @SETTINGS
    @hypothesis.given(body=from_schema(schema), small=st.just({}) | st.fixed_dictionaries(small),
                      accept_json=st.booleans())
    def run(body, small, accept_json):
        body = {**body, **small}
        headers = {"Accept": "application/json"} if accept_json else {}
        _check(fuzzed, fuzzed.client.post("/v1/audio/generate", json=body, headers=headers, timeout=10))

    run()


def test_arbitrary_json_and_headers_never_get_a_5xx(fuzzed):
    @SETTINGS
    @hypothesis.given(body=ANY_JSON | st.fixed_dictionaries({"prompt": st.text(max_size=50)}, optional={
        "steps": ANY_JSON, "scheduler_options": ANY_JSON, "duration": ANY_JSON, "samples": ANY_JSON,
        "seed": ANY_JSON}),
        content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
        authorization=st.sampled_from(["", "Bearer", "Bearer x", "Basic abc"]))
    def run(body, content_type, authorization):
        headers = {"content-type": content_type, **({"authorization": authorization} if authorization else {})}
        content = json.dumps(body, allow_nan=True).encode()
        _check(fuzzed, fuzzed.client.post("/v1/audio/generate", content=content, headers=headers, timeout=10))

    run()
