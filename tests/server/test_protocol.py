"""The protocol module: shared examples and strict validation (the add-on ships this same file)."""

from __future__ import annotations

import json

import pytest

from dphm.server import protocol

from .conftest import load_examples


@pytest.mark.parametrize("example", load_examples()["valid"], ids=lambda e: e["line"][:40])
def test_valid_examples_parse_and_round_trip(example):
    msg = protocol.parse(example["line"])
    assert {"kind": msg.kind, "type": msg.type, "id": msg.id, "fields": msg.fields} == example["expect"]
    again = protocol.parse(msg.encode())
    assert again == msg
    assert msg.encode().endswith("\n") and msg.encode().count("\n") == 1


@pytest.mark.parametrize("example", load_examples()["invalid"], ids=lambda e: e["why"])
def test_invalid_examples_are_rejected_with_their_code(example):
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse(example["line"])
    assert info.value.code == example["code"]


def test_examples_cover_every_message_type():
    types = {(e["expect"]["kind"], e["expect"]["type"]) for e in load_examples()["valid"]}
    assert {("request", t) for t in protocol.REQUESTS} <= types
    assert {("event", t) for t in protocol.EVENTS} <= types


def test_encode_refuses_invalid_messages_and_nan():
    with pytest.raises(protocol.ProtocolError, match="missing field 'total'"):
        protocol.event("progress", "1", phase="x", done=1).encode()
    with pytest.raises(protocol.ProtocolError):
        protocol.event("progress", "1", phase="x", done=1, total=2, eta_s=float("nan")).encode()
    line = protocol.event("log", None, level="info", message="line\nbreak ✓").encode()
    assert line.count("\n") == 1 and json.loads(line)["message"] == "line\nbreak ✓"
