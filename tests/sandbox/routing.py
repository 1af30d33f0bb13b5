"""HTTP: the threaded server, and the handler that routes each request, logs it and answers."""

from __future__ import annotations

import dataclasses
import hmac
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from .data import STREAMS
from .faults import REPLACING_FAULTS, fault_response
from .responses import Response, error_response

if TYPE_CHECKING:
    from .control import Sandbox


class RequestLog:
    """Entries appended as requests arrive; never holds the token."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(
        self, method: str, url: SplitResult, headers: Any, auth: tuple[str | None, bool]
    ) -> dict[str, Any]:
        scheme, auth_ok = auth
        entry = {
            "method": method,
            "path": self._redact(url.path),
            "query": self._redact(url.query),
            "params": {
                self._redact(name): [self._redact(value) for value in values]
                for name, values in parse_qs(url.query, keep_blank_values=True).items()
            },
            "stream": None,
            "auth_ok": auth_ok,
            "auth_scheme": scheme,
            "user_agent": self._redact(headers.get("User-Agent") or "") or None,
            "status": None,
            "fault": None,
            "t_start": time.monotonic(),
            "t_end": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[REDACTED]") if self._token else text


def check_authorization(header: str | None, token: str) -> tuple[str | None, bool]:
    """(scheme as "Token"/"Bearer" or None, whether the token is right)."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    canonical = {"token": "Token", "bearer": "Bearer"}.get(scheme.lower())
    if canonical is None:
        return None, False
    ok = hmac.compare_digest(credentials.strip().encode(), token.encode())
    return canonical, ok


# --- HTTP ----------------------------------------------------------------------------------------

STREAM_PATHS = {
    path: stream for stream in STREAMS for path in (f"/api/data/{stream}/", f"/api/data/{stream}")
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS, which can take seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so no request is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hangs up mid-response is part of the game
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # an idle kept-alive connection is closed after this many seconds
    server: Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is sb.requests

    def _dispatch(self, method: str) -> None:
        self._discard_request_body()
        url = urlsplit(self.path)
        sandbox = self.server.sandbox
        if url.path.startswith("/_sandbox/"):
            self._write(sandbox.admin_response(method, url.path))
            return
        auth = check_authorization(self.headers.get("Authorization"), sandbox.token)
        entry = sandbox.log.start(method, url, self.headers, auth)
        stream = STREAM_PATHS.get(url.path)
        entry["stream"] = stream
        if stream is None:
            self._finish(entry, error_response(404, "Not found"))
        elif method != "GET":
            self._finish(entry, error_response(405, "Method not allowed"))
        else:
            try:
                self._serve_data(entry, stream, url)
            except OSError:
                raise  # the client hung up
            except Exception as error:  # a bug in the sandbox: say so rather than hang up
                traceback.print_exc()
                self._finish(entry, error_response(500, f"Sandbox error: {error!r}"))

    def _serve_data(self, entry: dict[str, Any], stream: str, url: SplitResult) -> None:
        sandbox = self.server.sandbox
        fault = sandbox.faults.take(stream)
        kind = fault.kind if fault else None
        entry["fault"] = kind
        if kind in REPLACING_FAULTS:
            self._finish(entry, fault_response(fault, stream, sandbox.port))
            return
        if kind == "drop_before":
            self._drop(entry)
            return
        next_url = None
        if kind == "foreign_next_url":
            default = f"http://127.0.0.2:{sandbox.port}/api/data/{stream}/?cursor=x"
            next_url = fault.options.get("url", default)
        elif kind == "repeat_next_url":
            next_url = sandbox.url + self.path
        response = sandbox.api_response(stream, url.query, entry["auth_ok"], next_url)
        if kind == "slow":
            time.sleep(fault.options.get("seconds", 1.0))
        if kind == "truncated_json":  # a new Response: this one may be in the page cache
            response = dataclasses.replace(response, body=response.body[: len(response.body) // 2])
        if kind == "drop_mid_body":
            self._finish(entry, response, body=response.body[: len(response.body) // 2])
            self.close_connection = True
        else:
            self._finish(entry, response)

    def _finish(self, entry: dict[str, Any], response: Response, body: bytes | None = None) -> None:
        """Log the answer, then send it (``body``: send only that part of the body)."""
        entry["status"] = response.status
        entry["t_end"] = time.monotonic()
        self._write(response, body)

    def _drop(self, entry: dict[str, Any]) -> None:
        entry["t_end"] = time.monotonic()
        self.close_connection = True

    def _write(self, response: Response, body: bytes | None = None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body if body is None else body)

    def _discard_request_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(int(length))
