"""A fake cloud metadata server on 127.0.0.1: AWS IMDSv2 and GCE, with a switch for a spot notice."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeMetadata:
    """`url` to point the startup script at; `interrupt()` makes both clouds announce preemption."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = secrets or {}  # Secret Manager: "projects/P/secrets/S/versions/V" -> value
        self.interrupted = threading.Event()
        self.requests: list[str] = []
        self.identity = {"/latest/meta-data/ami-launch-index": "0", "/computeMetadata/v1/instance/name": "runner-vm"}  # what a VM asks first
        meta = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: str = "") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self):  # noqa: N802 (http.server's naming)
                meta.requests.append(f"PUT {self.path}")
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._send(200, "token-123")
                self._send(400)

            def do_GET(self):  # noqa: N802
                meta.requests.append(f"GET {self.path}")
                if self.path == "/latest/meta-data/spot/instance-action":
                    if self.headers.get("X-aws-ec2-metadata-token") != "token-123":
                        return self._send(401)
                    if meta.interrupted.is_set():
                        meta.answered_notice()
                        return self._send(200, json.dumps({"action": "terminate", "time": "2026-11-21T12:00:00Z"}))
                    return self._send(404)
                if self.path == "/computeMetadata/v1/instance/service-accounts/default/token":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self._send(403)
                    return self._send(200, json.dumps({"access_token": "sa-token", "expires_in": 3599}))
                if self.path.startswith("/v1/") and self.path.endswith(":access"):  # Secret Manager
                    if self.headers.get("Authorization") != "Bearer sa-token":
                        return self._send(401)
                    value = meta.secrets.get(self.path[len("/v1/"):-len(":access")])
                    if value is None:
                        return self._send(404)
                    return self._send(200, json.dumps({"payload": {"data": base64.b64encode(value.encode()).decode()}}))
                if self.path in meta.identity:  # the launch index (IMDSv2, with its token) or the VM's name (GCE)
                    aws = self.path.startswith("/latest/")
                    if (aws and self.headers.get("X-aws-ec2-metadata-token") != "token-123") or (
                            not aws and self.headers.get("Metadata-Flavor") != "Google"):
                        return self._send(401 if aws else 403)
                    return self._send(200, meta.identity[self.path])
                if self.path == "/computeMetadata/v1/instance/preempted":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self._send(403)
                    return self._send(200, "TRUE" if meta.interrupted.is_set() else "FALSE")
                self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def interrupt(self, times: int = 0) -> None:
        """Announce preemption: to every request from now on, or only to the next `times` notice requests."""
        self.times_left = times
        self.interrupted.set()

    def answered_notice(self) -> None:
        if getattr(self, "times_left", 0):
            self.times_left -= 1
            if not self.times_left:
                self.interrupted.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
