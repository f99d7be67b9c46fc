"""InfluxDB 1.8's ``/api/v2/write`` in front of a real influxd 1.6, which only has ``/write``.

InfluxDB 2 cannot be installed here; 1.8 answers the 2.x client's writes with a small mapping,
``POST /api/v2/write?org=..&bucket=db[/rp]&precision=..`` to
``POST /write?db=..&rp=..&precision=..`` (the org is ignored; the ``Token`` header, 1.x's
``user:password`` there, is only recorded: this influxd has no auth), and ``GET /health`` says
whether the server is ready. This gateway does the same on a loopback port of its own and hands
the rest (``/ping``, ``/query``, ``/write``) to influxd unchanged, so influxdb-client's batching
``WriteApi`` can be tested against a real server. Like 1.8, it creates no database: the test
does. ``hold`` keeps the writes waiting, so a test can look at what happens meanwhile.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3

FORWARD_TIMEOUT_S = 10.0
HOLD_MAX_S = 60.0


@dataclass(frozen=True)
class V2Write:
    """One ``/api/v2/write`` the gateway answered."""

    bucket: str
    org: str
    precision: str
    authorization: str
    gzipped: bool
    lines: int
    status: int


class InfluxV2Gateway:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.writes: list[V2Write] = []
        self._open = threading.Event()
        self._open.set()
        self._waiting = 0
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=FORWARD_TIMEOUT_S), retries=False
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="influx-v2-gateway", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def waiting(self) -> int:
        """Writes held back now."""
        with self._lock:
            return self._waiting

    def hold(self) -> None:
        """Writes wait (the client's request stays open) until ``release``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()
        self._http.clear()

    def v2_write(self, query: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self._waiting += 1
        try:
            self._open.wait(HOLD_MAX_S)
        finally:
            with self._lock:
                self._waiting -= 1
        params = {key: values[-1] for key, values in parse_qs(query).items()}
        database, _, retention_policy = params.get("bucket", "").partition("/")
        gzipped = headers.get("content-encoding", "") == "gzip"
        text = gzip.decompress(body) if gzipped else body
        target = {"db": database, "precision": params.get("precision", "ns")}
        if retention_policy:
            target["rp"] = retention_policy
        status, answer = self.forward("POST", f"/write?{urlencode(target)}", {}, text)
        self.writes.append(
            V2Write(
                bucket=params.get("bucket", ""),
                org=params.get("org", ""),
                precision=target["precision"],
                authorization=headers.get("authorization", ""),
                gzipped=gzipped,
                lines=len([line for line in text.split(b"\n") if line.strip()]),
                status=status,
            )
        )
        return status, answer

    def health(self) -> tuple[int, bytes]:
        status, _ = self.forward("GET", "/ping", {}, b"")
        ready = status == 204
        document = {
            "name": "influxdb",
            "message": "ready for queries and writes" if ready else "influxd unreachable",
            "status": "pass" if ready else "fail",
            "checks": [],
        }
        return (200 if ready else 503), json.dumps(document).encode()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """influxd's own answer; 503 while it is down, as a server that is not ready."""
        try:
            response = self._http.request(
                method, self.upstream + path, body=body or None, headers=headers
            )
        except urllib3.exceptions.HTTPError as error:
            return 503, json.dumps({"error": f"influxd unreachable: {error}"}).encode()
        return response.status, response.data


def _handler(gateway: InfluxV2Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            if self.command == "POST" and url.path == "/api/v2/write":
                status, answer = gateway.v2_write(url.query, headers, body)
            elif url.path == "/health":
                status, answer = gateway.health()
            else:
                passed = {
                    key: value
                    for key, value in headers.items()
                    if key in ("content-type", "content-encoding", "authorization")
                }
                status, answer = gateway.forward(self.command, self.path, passed, body)
            self.send_response(status)
            if answer:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


@contextmanager
def running_influx_v2_gateway(upstream: str) -> Iterator[InfluxV2Gateway]:
    gateway = InfluxV2Gateway(upstream)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
