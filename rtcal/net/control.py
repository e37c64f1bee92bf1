"""Control requests and replies (REQ/REP), JSON. Only control uses JSON; nothing
is ever unpickled.

Request: one part, a UTF-8 JSON object ``{"cmd": NAME, ...}`` of at most
MAX_REQUEST_BYTES. Commands:

    ping            -> {"version": PROTOCOL_VERSION}
    status          -> engine state, counters, components, latency summary
    counters        -> the counters alone
    footprints      -> {} plus the parts of a footprints message (footprints.py)
    get_triggers    -> {"rules": [...]}
    set_triggers    {"rules": [rule, ...]} -> {"rules": [...]} (replaces all rules)
    clear_triggers  -> {"rules": []}
    stop            -> {} (the engine finishes its results file and exits)

Reply: first part a JSON object ``{"ok": true, "result": {...}}`` or
``{"ok": false, "error": "reason: details"}``; a footprints reply adds the
footprints message parts after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rtcal.net.errors import ProtocolError

MAX_REQUEST_BYTES = 1 << 20
COMMANDS = frozenset(
    {
        "ping",
        "status",
        "counters",
        "footprints",
        "get_triggers",
        "set_triggers",
        "clear_triggers",
        "stop",
    }
)


@dataclass(frozen=True)
class ControlRequest:
    cmd: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ControlReply:
    """ok: whether the request succeeded; result: its JSON result; error: why not;
    parts: binary parts that followed the JSON (the footprints reply)."""

    ok: bool
    result: dict
    error: str = ""
    parts: tuple = ()


def encode_request(cmd: str, **args) -> bytes:
    return json.dumps({"cmd": cmd, **args}).encode("utf-8")


def decode_request(parts: list) -> ControlRequest:
    """Parse and validate a request (ProtocolError with reason "bad request" or
    "unknown command")."""
    if len(parts) != 1:
        raise ProtocolError("bad request", f"{len(parts)} parts, a request is one JSON part")
    raw = bytes(parts[0])
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError("bad request", f"{len(raw)} bytes, at most {MAX_REQUEST_BYTES}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError("bad request", f"not UTF-8 JSON ({e})") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("cmd"), str):
        raise ProtocolError("bad request", 'a request is a JSON object with a "cmd" string')
    cmd = obj.pop("cmd")
    if cmd not in COMMANDS:
        raise ProtocolError("unknown command", f"{cmd!r} (known: {', '.join(sorted(COMMANDS))})")
    if cmd == "set_triggers":
        rules = obj.get("rules")
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ProtocolError("bad request", 'set_triggers needs "rules": a list of objects')
    return ControlRequest(cmd, obj)


def encode_reply(result: dict | None = None, *, error: str = "", parts: tuple = ()) -> list:
    """Reply parts: ok with ``result`` (and extra binary ``parts``), or an error."""
    if error:
        head = {"ok": False, "error": error}
    else:
        head = {"ok": True, "result": result or {}}
    return [json.dumps(head).encode("utf-8"), *parts]


def decode_reply(parts: list) -> ControlReply:
    if not parts:
        raise ProtocolError("bad reply", "no parts")
    try:
        head = json.loads(bytes(parts[0]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError("bad reply", f"not UTF-8 JSON ({e})") from e
    if not isinstance(head, dict) or not isinstance(head.get("ok"), bool):
        raise ProtocolError("bad reply", 'a reply is a JSON object with an "ok" boolean')
    return ControlReply(
        head["ok"], head.get("result") or {}, str(head.get("error", "")), tuple(parts[1:])
    )
