"""HTTP server of the sandbox CRM (HubSpot CRM v3 subset, docs/architecture.md).

In-process::

    srv = start_in_thread("crm.sqlite", token="t0k", knobs={"latency_ms": 50})
    srv.base_url; srv.set_knobs(error_rate_5xx=0.2); srv.stats(); srv.stop()

As a process (``trueup sandbox up``)::

    python -m trueup.sandbox.crm.server --db PATH --token-file FILE --host 127.0.0.1 --port 8765
"""
from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import CrmApi, error_body
from .faults import Faults
from .ratelimit import SECONDLY, TEN_SECONDLY, WINDOW_MS, RateLimiter
from .store import OBJECT_TYPES, CrmStore, now_ms

log = logging.getLogger("trueup.sandbox.crm")

_OBJ = re.compile(r"^/crm/v3/objects/([^/]+)(?:/([^/]+))?(?:/([^/]+))?/?$")
_ASSOC = re.compile(r"^/crm/v4/associations/([^/]+)/([^/]+)/batch/read/?$")
_GATEWAY = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
#: a batch of 100 inputs is a few tens of kB; anything far larger is refused unread (413)
MAX_BODY_BYTES = 4 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: "SandboxServer"
    conns: set
    conns_lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # responses are small; do not wait on delayed ACKs
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence default logging
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              ctype: str = "application/json;charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n" + body)  # one write: no Nagle/delayed-ACK stall
        self.flush_headers()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, method: str) -> None:
        app = self.server.app
        t0 = time.monotonic()
        url = urlsplit(self.path)
        path = url.path
        kind, status, records, note = "other", 0, 0, ""
        try:
            kind, status, records, note = self._dispatch(app, method, path, url.query)
        except Exception:  # noqa: BLE001 - a sandbox bug must not kill the connection silently
            log.exception("sandbox CRM internal error on %s %s", method, path)
            status = 500
            self._send(500, json.dumps(error_body("internal sandbox error", category="INTERNAL_ERROR")).encode())
            app.faults.record(kind, 500)
        log.info("%s %s %s -> %s %s %.1fms", self.client_address[0], method, path + ("?" + url.query if url.query
                 else ""), status, note, (time.monotonic() - t0) * 1000)

    def _body(self) -> bytes | None:
        """The request body, read only once the caller is authenticated; None if it is larger
        than MAX_BODY_BYTES (or its length is not a number)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, app: "SandboxServer", method: str, path: str, query: str) -> tuple[str, int | str, int, str]:
        faults = app.faults
        m = _OBJ.match(path)
        kind = "admin" if path.startswith("/_sandbox/") else "other"
        t = rid = sub = None
        if m:
            t, rid, sub = m.group(1), m.group(2), m.group(3)
            if method == "GET" and rid is None:
                kind = "list"
            elif method == "GET" and sub is None:
                kind = "get"
            elif method == "POST" and rid == "search" and sub is None:
                kind = "search"
            elif method == "POST" and rid == "batch" and sub in ("read", "upsert", "update"):
                kind = f"batch_{sub}"
        assoc = _ASSOC.match(path) if method == "POST" else None
        if assoc:
            kind, t, rid = "associations_read", assoc.group(1), assoc.group(2)

        # --- auth
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token or not hmac.compare_digest(token.encode(), app.token.encode()):
            body = error_body("Authentication credentials not found. This API supports OAuth 2.0 authentication "
                              "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                              "oauth-overview", category="INVALID_AUTHENTICATION")
            self.close_connection = True   # its body is never read: the connection cannot be reused
            faults.record(kind, 401)   # counted before the answer leaves: a client never sees it uncounted
            self._send(401, json.dumps(body).encode())
            return kind, 401, 0, ""
        raw = self._body()
        if raw is None:
            self.close_connection = True
            faults.record(kind, 413)
            self._send(413, json.dumps(error_body(f"Request body larger than {MAX_BODY_BYTES} bytes",
                                                  category="VALIDATION_ERROR")).encode())
            return kind, 413, 0, ""

        # --- admin endpoints: no rate limit, no faults
        if kind == "admin":
            return self._admin(app, method, path, raw)

        # --- rate limits
        headers: dict[str, str] = {}
        if kind == "search":
            if not app.limiter.check_secondly(token, faults.get("search_per_second")):
                body = error_body("You have reached your secondly limit.", category="RATE_LIMITS",
                                  errorType="RATE_LIMIT", policyName=SECONDLY)
                del body["category"]
                faults.record(kind, 429, policy=SECONDLY)
                self._send(429, json.dumps(body).encode())
                return kind, 429, 0, SECONDLY
        else:
            limit = faults.get("rate_limit_10s")
            ok, remaining = app.limiter.check_ten_secondly(token, limit)
            headers = {"X-HubSpot-RateLimit-Max": str(limit if limit and limit > 0 else 1_000_000),
                       "X-HubSpot-RateLimit-Remaining": str(remaining),
                       "X-HubSpot-RateLimit-Interval-Milliseconds": str(WINDOW_MS)}
            if not ok:
                body = error_body("You have reached your ten_secondly_rolling limit.", errorType="RATE_LIMIT",
                                  policyName=TEN_SECONDLY)
                del body["category"]
                faults.record(kind, 429, policy=TEN_SECONDLY)
                self._send(429, json.dumps(body).encode(), headers)
                return kind, 429, 0, TEN_SECONDLY

        # --- faults before processing
        lat = faults.get("latency_ms") or 0
        if lat > 0:
            time.sleep(lat / 1000)
        if faults.roll("error_rate_5xx"):
            code = faults.choice(sorted(_GATEWAY))
            msg = _GATEWAY[code]
            faults.record(kind, code, fault="5xx")
            self._send(code, f"<html><body><h1>{code} {msg}</h1></body></html>".encode(), headers,
                       ctype="text/html")
            return kind, code, 0, "fault=5xx"

        # --- the API itself
        status, body, records = self._api(app, kind, method, t, rid, query, raw)
        payload = json.dumps(body, separators=(",", ":")).encode()

        # --- faults after processing (the request WAS applied)
        if faults.roll("drop_rate"):
            faults.record(kind, "dropped", fault="drop")
            self._drop()
            return kind, "dropped", 0, "fault=drop"
        note = ""
        if status in (200, 207) and kind in ("batch_update", "batch_upsert") and body.get("results") \
                and faults.roll("unacknowledged_rate"):
            body = {**body, "results": body["results"][1:]}   # applied, but one input left out of the answer
            payload = json.dumps(body, separators=(",", ":")).encode()
            note = "fault=unacknowledged"
        if status == 200 and faults.roll("malformed_rate"):
            payload = payload[: max(1, len(payload) // 2)]
            note = "fault=malformed"
            faults.record(kind, status, fault="malformed")
        else:
            faults.record(kind, status, records=records)
        self._send(status, payload, headers)
        return kind, status, records, note

    def _api(self, app: "SandboxServer", kind: str, method: str, t: str | None, rid: str | None, query: str,
             raw: bytes) -> tuple[int, dict, int]:
        if kind == "other":
            return 404, error_body(f"No route for {method} {urlsplit(self.path).path}", category="OBJECT_NOT_FOUND"), 0
        if t not in OBJECT_TYPES:
            return 400, error_body(f"Unable to infer object type from: {t}"), 0
        if kind == "associations_read":
            try:
                body = json.loads(raw.decode("utf-8")) if raw else {}
            except (ValueError, UnicodeDecodeError):
                return 400, error_body("Invalid input JSON on line 1"), 0
            return app.api.associations_batch_read(t, rid or "", body)
        q = parse_qs(query, keep_blank_values=True)
        if kind == "list":
            return app.api.list(t, q, app.base_url)
        if kind == "get":
            return app.api.get_one(t, rid or "", q)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError):
            return 400, error_body("Invalid input JSON on line 1"), 0
        if kind == "search":
            return app.api.search(t, body)
        return getattr(app.api, kind)(t, body)

    def _admin(self, app: "SandboxServer", method: str, path: str, raw: bytes) -> tuple[str, int, int, str]:
        if path == "/_sandbox/knobs" and method == "POST":
            try:
                kw = json.loads(raw.decode() or "{}")
                knobs = app.set_knobs(**kw)
            except (ValueError, KeyError, TypeError) as e:
                self._send(400, json.dumps(error_body(str(e))).encode())
                return "admin", 400, 0, ""
            self._send(200, json.dumps({"knobs": knobs}).encode())
            return "admin", 200, 0, ""
        if path == "/_sandbox/knobs" and method == "GET":
            self._send(200, json.dumps({"knobs": dict(app.faults.knobs)}).encode())
            return "admin", 200, 0, ""
        if path == "/_sandbox/stats" and method == "GET":
            self._send(200, json.dumps(app.stats()).encode())
            return "admin", 200, 0, ""
        if path == "/_sandbox/stats/reset" and method == "POST":
            app.faults.reset_stats()
            self._send(200, b"{}")
            return "admin", 200, 0, ""
        self._send(404, json.dumps(error_body("unknown admin endpoint", category="OBJECT_NOT_FOUND")).encode())
        return "admin", 404, 0, ""


class SandboxServer:
    """A running sandbox CRM. Create with :func:`start_in_thread` (or :meth:`serve` for the CLI)."""

    def __init__(self, db_path: str | Path, token: str, host: str = "127.0.0.1", port: int = 0,
                 knobs: dict | None = None):
        if not is_loopback(host):
            raise ValueError(f"the sandbox CRM only binds loopback addresses, refusing {host!r}")
        if not token:
            raise ValueError("a non-empty token is required")
        self.token = token
        self.store = CrmStore(db_path)
        self.faults = Faults(knobs)
        self.limiter = RateLimiter()
        self.api = CrmApi(self.store, stamp=self._stamp, visible=self._visible)
        cls = _Server
        if ":" in host:
            cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self.httpd = cls((host, port), _Handler)
        self.httpd.app = self
        self.httpd.conns = set()
        self.httpd.conns_lock = threading.Lock()
        self.host = host
        self.port: int = self.httpd.server_address[1]
        h = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{h}:{self.port}"
        self._thread: threading.Thread | None = None

    def _stamp(self) -> int:
        frozen = self.faults.get("frozen_timestamp_ms")
        return int(frozen) if frozen is not None else now_ms()

    def _visible(self) -> int:
        return now_ms() + int(self.faults.get("search_visibility_delay_ms") or 0)

    def set_knobs(self, **kw: Any) -> dict:
        knobs = self.faults.set(**kw)
        if "rate_limit_10s" in kw or "search_per_second" in kw:
            self.limiter.reset()
        return knobs

    def stats(self) -> dict:
        return self.faults.stats()

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> "SandboxServer":
        self._thread = threading.Thread(target=self.serve_forever, name=f"sandbox-crm-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.httpd.conns_lock:  # end kept-alive client connections: no zombie server after stop()
            conns = list(self.httpd.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()

    def __enter__(self) -> "SandboxServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(db_path: str | Path, token: str, host: str = "127.0.0.1", port: int = 0,
                    knobs: dict | None = None) -> SandboxServer:
    """Start a sandbox CRM on a daemon thread; returns once it accepts connections."""
    return SandboxServer(db_path, token, host=host, port=port, knobs=knobs).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trueup.sandbox.crm.server", description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="SQLite file with the CRM state (created if missing)")
    ap.add_argument("--token-file", required=True, help="file holding the bearer token")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--port-file", help="write the bound port here once listening (useful with --port 0)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    token = Path(args.token_file).read_text().strip()
    try:
        srv = SandboxServer(args.db, token, host=args.host, port=args.port)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    srv.start()
    if args.port_file:
        Path(args.port_file).write_text(str(srv.port))
    log.info("sandbox CRM listening on %s (db %s)", srv.base_url, args.db)
    while not stop.wait(0.5):
        pass
    log.info("sandbox CRM stopping")
    srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
