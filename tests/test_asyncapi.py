"""docs/asyncapi.json stays in step with the code: input types, topics, required fields and
examples against the codec; output types and fields against what the rules emit."""

from __future__ import annotations

import pathlib
import re

import orjson
import pytest

from dunning.config.policy import CALENDAR_KEYS, KEYS, parse_policy
from dunning.rules import model as m
from dunning.streams import topics
from dunning.streams.codec import decode
from tests.agents.scenarios import every_rule

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = orjson.loads((ROOT / "docs" / "asyncapi.json").read_bytes())
MESSAGES = DOC["components"]["messages"]
OUTPUT_MESSAGE = {topics.NOTIFICATIONS: "notification", topics.PROVISIONING: "provisioning",
                  topics.BILLING: "billing"}


def refs(channel: str) -> set[str]:
    ops = DOC["channels"][channel]
    message = (ops.get("subscribe") or ops["publish"])["message"]
    return {r["$ref"].rsplit("/", 1)[1] for r in message.get("oneOf", [message])}


def test_every_input_topic_lists_exactly_its_event_types():
    for topic, types in topics.EVENT_TYPES.items():
        assert refs(topic) == set(types), topic


INPUTS = [(topic, etype) for topic, types in topics.EVENT_TYPES.items() for etype in types]


@pytest.mark.parametrize(("topic", "etype"), INPUTS)
def test_examples_decode_and_each_required_field_is_required(topic, etype):
    message = MESSAGES[etype]
    example = message["examples"][0]["payload"]
    assert not isinstance(decode(topic, None, orjson.dumps(example)), m.DeadLetter)
    for name in message["payload"]["required"]:
        partial = {k: v for k, v in example.items() if k != name}
        rejected = decode(topic, None, orjson.dumps(partial))
        assert isinstance(rejected, m.DeadLetter), name
        assert rejected.error == m.MISSING_FIELD, (name, rejected.reason)


def test_output_types_and_fields_match_what_the_rules_emit():
    emitted = every_rule().log
    for command in emitted:
        payload = MESSAGES[OUTPUT_MESSAGE[command.topic]]["payload"]
        assert command.type in payload["properties"]["type"]["enum"], command.type
        missing = set(payload["required"]) - set(command.value)
        assert not missing, (command.type, missing)
    source = "".join(p.read_text() for p in (ROOT / "dunning" / "rules").glob("*.py"))
    in_code = set(re.findall(r'"((?:notify|service|request|invoice|charge)\.[a-z_]+)"', source))
    for topic, name in OUTPUT_MESSAGE.items():
        documented = set(MESSAGES[name]["payload"]["properties"]["type"]["enum"])
        assert documented <= in_code, documented - in_code
        assert {c.type for c in emitted if c.topic == topic} <= documented



def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'{k} = "{a}"' for k, a in value.items()) + " }"
    return str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')


def test_the_policy_terms_schema_names_every_policy_key_and_its_example_loads():
    terms = DOC["components"]["schemas"]["policyTerms"]
    assert set(terms["properties"]) == set(KEYS)
    for example in terms["examples"]:
        t = parse_policy("[defaults]\n" + "".join(f"{k} = {_toml(v)}\n"
                                                  for k, v in example.items())).terms()
        assert t.late_fee_in("JPY") == 500 and str(t.threshold_in("EUR")) == "0.00"


def test_the_production_server_is_the_compose_listener_with_its_security():
    """The production server is docker-compose.yml's client listener, SASL_SSL with the
    mechanism the secured test broker and compose run, which the worker accepts."""
    import yaml

    from dunning.config.security import MECHANISMS

    production = DOC["servers"]["production"]
    assert production["protocol"] == "kafka-secure"
    [scheme] = [name for req in production["security"] for name in req]
    assert DOC["components"]["securitySchemes"][scheme]["type"] == "scramSha512"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["worker-1"]["environment"]
    assert worker["DUNNING_BROKER_SASL_MECHANISM"] == "SCRAM-SHA-512" in MECHANISMS
    assert production["url"] == worker["DUNNING_BROKER"].removeprefix("kafka://").split(";")[0]


def test_the_policy_calendar_schema_names_every_calendar_key_and_its_example_loads():
    calendar = DOC["components"]["schemas"]["policyCalendar"]
    assert set(calendar["properties"]) == set(CALENDAR_KEYS)
    for example in calendar["examples"]:
        cal = parse_policy("[calendar]\n" + "".join(f"{k} = {_toml(v)}\n"
                                                    for k, v in example.items())).terms().calendar
        assert cal is not None and cal.time_zone == example["time_zone"]
