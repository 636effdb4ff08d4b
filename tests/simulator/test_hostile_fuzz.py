"""Hostile input fed to the simulator over real HTTP: never a 5xx, never a state change for a refusal.

Random JSON, valid bodies with one property replaced by a value of any type, deep and wide nesting,
escaped lone surrogates and raw bytes that are not UTF-8. Every answer must be LINE's: JSON with a
``message``, an ``X-Line-Request-Id``, a status below 500; and a request that is not accepted changes
neither the quota, nor the accepted retry keys, nor the delivery record. Example counts stay modest so
the module runs in seconds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fast_loop import examples

from .simulator_helpers import text, user_id
from .test_contract import ENDPOINTS, SENDS, state, valid_body

FUZZ = settings(
    max_examples=examples(40),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
POST_ENDPOINTS = ["push", "multicast", "validate_push", "validate_multicast"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
#: Paths into a valid push/multicast body whose value a mutation replaces.
PATHS = [
    ("to",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "type"),
    ("messages", 0, "text"),
    ("messages", 0, "emojis"),
    ("notificationDisabled",),
    ("customAggregationUnits",),
]


def post(line, endpoint: str, data: bytes, retry_key: str | None):
    headers = line.headers(retry_key if endpoint in SENDS else None)
    return line.session.post(line.base_url + ENDPOINTS[endpoint][1], data=data, headers=headers, timeout=30)


def assert_line_answer(sim, response, before) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.headers["X-Line-Request-Id"]
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code != 200:
        assert isinstance(body["message"], str)
        assert state(sim) == before, f"a refused request ({response.status_code}) changed the state"
    assert sim.admin.stats()["internal_errors"] == 0


def mutated(body: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@FUZZ
@given(endpoint=st.sampled_from(POST_ENDPOINTS), value=json_values)
def test_random_json_bodies(line, sim, endpoint, value):
    before = state(sim)
    response = post(line, endpoint, json.dumps(value).encode(), str(uuid.uuid4()))
    assert_line_answer(sim, response, before)


@FUZZ
@given(endpoint=st.sampled_from(["push", "multicast"]), path=st.sampled_from(PATHS), value=json_values)
def test_valid_bodies_with_one_property_of_a_wrong_type(line, sim, endpoint, path, value):
    body = valid_body(endpoint)
    body["messages"][0]["emojis"] = None
    before = state(sim)
    response = post(line, endpoint, json.dumps(mutated(body, path, value)).encode(), str(uuid.uuid4()))
    assert_line_answer(sim, response, before)


@FUZZ
@given(
    endpoint=st.sampled_from(POST_ENDPOINTS),
    depth=st.integers(min_value=1, max_value=3000),
    opener=st.sampled_from(["[", '{"a":']),
)
def test_deep_nesting(line, sim, endpoint, depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    data = f'{{"to": "{user_id(1)}", "messages": [{{"type": "text", "text": "x", "emojis": {nested}}}]}}'
    before = state(sim)
    response = post(line, endpoint, data.encode(), str(uuid.uuid4()))
    assert_line_answer(sim, response, before)


@FUZZ
@given(
    endpoint=st.sampled_from(POST_ENDPOINTS),
    escape=st.integers(min_value=0xD800, max_value=0xDFFF),
    prefix=st.text(max_size=5),
    where=st.sampled_from(["text", "key", "to"]),
)
def test_escaped_lone_surrogates(line, sim, endpoint, escape, prefix, where):
    lone = json.dumps(prefix)[1:-1] + f"\\u{escape:04x}"
    message = {"type": "text", "text": "@TEXT@"}
    body = {"to": user_id(1) if endpoint == "push" else [user_id(1)], "messages": [message]}
    raw = json.dumps(body)
    if where == "text":
        raw = raw.replace("@TEXT@", lone)
    elif where == "key":
        raw = raw.replace('"type"', f'"{lone}": 1, "type"').replace("@TEXT@", "x")
    else:
        raw = raw.replace(user_id(1), lone).replace("@TEXT@", "x")
    before = state(sim)
    response = post(line, endpoint, raw.encode(), str(uuid.uuid4()))
    assert_line_answer(sim, response, before)
    assert response.status_code == 400


@FUZZ
@given(endpoint=st.sampled_from(POST_ENDPOINTS), noise=st.binary(min_size=1, max_size=200))
def test_raw_bytes(line, sim, endpoint, noise):
    data = b'{"to": "' + user_id(1).encode() + b'", "messages": [{"type": "text", "text": "' + noise + b'"}]}'
    before = state(sim)
    response = post(line, endpoint, data, str(uuid.uuid4()))
    assert_line_answer(sim, response, before)


@settings(
    max_examples=5, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(endpoint=st.sampled_from(POST_ENDPOINTS), width=st.integers(min_value=10_000, max_value=200_000))
def test_huge_flat_bodies(line, sim, endpoint, width):
    body = {"to": [user_id(n % 600) for n in range(width // 40)], "messages": [text("x" * 100)] * 6}
    before = state(sim)
    response = post(line, endpoint, json.dumps(body).encode(), str(uuid.uuid4()))
    assert_line_answer(sim, response, before)
