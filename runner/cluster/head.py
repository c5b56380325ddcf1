"""The head's address as the head publishes it (jobs/<parent>/head): read back as untrusted, an IPv4:port or nothing."""

from __future__ import annotations

import re

HEAD_LIMIT = 64  # bytes of the record ever read
ADDRESS_RE = re.compile(r"(?P<ip>[0-9]{1,3}(?:\.[0-9]{1,3}){3}):(?P<port>[0-9]{1,5})")


def parse_head(raw: bytes | str | None) -> tuple[str, int] | None:
    """(ip, port) from the head record ('10.0.1.5:6379', one optional trailing newline), else None.

    Anything else is refused: another form, a hostname, an octet over 255 or with a leading zero, a port outside
    1024-65535 (Ray's own bounds), spaces, control characters, more bytes than HEAD_LIMIT.
    """
    if raw is None:
        return None
    if isinstance(raw, bytes):
        if len(raw) > HEAD_LIMIT:
            return None
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    if len(raw) > HEAD_LIMIT:
        return None
    text = raw[:-1] if raw.endswith("\n") else raw
    m = ADDRESS_RE.fullmatch(text)
    if not m:
        return None
    octets = m["ip"].split(".")
    if any(len(o) > 1 and o.startswith("0") or int(o) > 255 for o in octets):
        return None
    port = m["port"]
    if port.startswith("0") or not 1024 <= int(port) <= 65535:
        return None
    return m["ip"], int(port)


def format_head(ip: str, port: int) -> str:
    """The record the head writes, for tests and docs: 'IP:PORT\\n'."""
    return f"{ip}:{port}\n"
