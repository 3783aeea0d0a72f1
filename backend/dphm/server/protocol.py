"""The JSON-lines protocol between the Blender add-on and ``dphm serve`` (docs/protocol.md).

One JSON object per line, UTF-8. The add-on writes **requests** to the server's stdin
(``{"v": 1, "type": "ping", "id": "7"}``); the server writes **events** to its stdout
(``{"v": 1, "event": "progress", "id": "7", "phase": "track", ...}``). Fields are flat; the schema
tables below are the whole contract.

This one file serves both sides: ``build.py`` copies it into the extension as
``client/protocol.py`` (the add-on cannot import dphm, and dphm never imports bpy), so it imports
only the standard library. Both sides parse the shared examples in
``tests/server/protocol_examples.json``.

Validation is strict in both directions: an unknown type, an unknown field, a missing required
field or a wrongly typed value raises :class:`ProtocolError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1

# Field kinds: "str", "int", "number" (int or float), "bool", "list" (of str), "dict".
# Each entry: field → (kind, required, nullable).
REQUESTS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "ping": {},
    "shutdown": {},
    "cancel": {"job": ("str", False, True)},
    "selftest": {"steps": ("int", False, False), "delay_s": ("number", False, False),
                 "fail": ("bool", False, False), "print_stdout": ("bool", False, False),
                 "output": ("str", False, False)},
    "sample": {"output": ("str", True, False), "n": ("int", False, False), "seed": ("int", False, False),
               "expression": ("bool", False, False), "resolution": ("int", False, False),
               "steps": ("int", False, False), "device": ("str", False, False),
               "weights": ("str", False, False)},
    "track": {"recording": ("str", True, False), "output": ("str", True, False),
              "frame_start": ("int", False, False), "frame_stop": ("int", False, True),
              "stride": ("int", False, False), "preset": ("str", False, False),
              "device": ("str", False, False), "weights": ("str", False, False)},
}
JOB_TYPES = ("selftest", "sample", "track")

EVENTS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "hello": {"protocol": ("int", True, False), "dphm": ("str", True, False), "pid": ("int", True, False)},
    "pong": {"busy": ("str", True, True)},
    "progress": {"phase": ("str", True, False), "done": ("int", True, False), "total": ("int", True, False),
                 "eta_s": ("number", False, True), "message": ("str", False, False)},
    "log": {"level": ("str", True, False), "message": ("str", True, False)},
    "result": {"paths": ("list", True, False), "summary": ("dict", True, False)},
    "error": {"code": ("str", True, False), "message": ("str", True, False)},
    "bye": {},
}
# error codes: bad_request (unparsable/invalid line), version (protocol mismatch), busy (a job is
# running), not_found (cancel: no such job), cancelled (job stopped by cancel; finished work kept),
# failed (job raised a DphmError: the message is for the user), internal (a bug: see the log).
ERROR_CODES = ("bad_request", "version", "busy", "not_found", "cancelled", "failed", "internal")
LOG_LEVELS = ("debug", "info", "warning", "error")

_RESERVED = ("v", "id")


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol version (``code``: an error code)."""

    def __init__(self, message: str, code: str = "bad_request"):
        super().__init__(message)
        self.code = code


@dataclass
class Message:
    """One request (``kind == "request"``) or event (``kind == "event"``)."""

    kind: str
    type: str
    id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        tag = "type" if self.kind == "request" else "event"
        return {"v": PROTOCOL_VERSION, tag: self.type, "id": self.id, **self.fields}

    def encode(self) -> str:
        """One line (with the trailing newline); validated before it is sent."""
        validate(self)
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def request(type_: str, id_: str | None, **fields: Any) -> Message:
    return Message("request", type_, id_, fields)


def event(type_: str, id_: str | None, **fields: Any) -> Message:
    return Message("event", type_, id_, fields)


def _check_value(name: str, kind: str, value: Any) -> None:
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "dict": isinstance(value, dict),
    }[kind]
    if not ok:
        raise ProtocolError(f"field {name!r} must be {kind}, got {type(value).__name__} {value!r:.60}")


def validate(msg: Message) -> None:
    """Raise :class:`ProtocolError` unless ``msg`` matches the schema tables."""
    table = REQUESTS if msg.kind == "request" else EVENTS if msg.kind == "event" else None
    if table is None:
        raise ProtocolError(f"unknown message kind {msg.kind!r}")
    schema = table.get(msg.type)
    if schema is None:
        raise ProtocolError(f"unknown {msg.kind} type {msg.type!r} (known: {', '.join(table)})")
    if msg.id is not None and not isinstance(msg.id, str):
        raise ProtocolError(f"'id' must be a string or null, got {msg.id!r:.60}")
    if msg.kind == "request" and not msg.id:
        raise ProtocolError(f"request {msg.type!r} needs a non-empty 'id'")
    for name in msg.fields:
        if name not in schema:
            raise ProtocolError(f"{msg.type}: unknown field {name!r}")
    for name, (kind, required, nullable) in schema.items():
        if name not in msg.fields:
            if required:
                raise ProtocolError(f"{msg.type}: missing field {name!r}")
            continue
        value = msg.fields[name]
        if value is None:
            if not nullable:
                raise ProtocolError(f"{msg.type}: field {name!r} must not be null")
            continue
        _check_value(name, kind, value)
    if msg.type == "error" and msg.kind == "event" and msg.fields["code"] not in ERROR_CODES:
        raise ProtocolError(f"error: unknown code {msg.fields['code']!r}")
    if msg.type == "log" and msg.kind == "event" and msg.fields["level"] not in LOG_LEVELS:
        raise ProtocolError(f"log: unknown level {msg.fields['level']!r}")


def parse(line: str | bytes) -> Message:
    """Parse and validate one line (request or event, told apart by ``type`` / ``event``)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(f"not UTF-8 ({err})") from err
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"not JSON ({err.msg} at column {err.colno}): {text[:80]!r}") from err
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(data).__name__}")
    version = data.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})",
                            "version")
    if ("type" in data) == ("event" in data):
        raise ProtocolError("a message needs exactly one of 'type' (request) or 'event' (event)")
    kind, tag = ("request", "type") if "type" in data else ("event", "event")
    type_ = data[tag]
    if not isinstance(type_, str):
        raise ProtocolError(f"{tag!r} must be a string")
    fields = {k: v for k, v in data.items() if k not in (*_RESERVED, tag)}
    msg = Message(kind, type_, data.get("id"), fields)
    validate(msg)
    return msg
