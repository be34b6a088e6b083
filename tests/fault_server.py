"""A misbehaving stand-in for Backstage on loopback, for faults a real backend cannot produce.

The provider segment of the path picks the fault, so one server covers every
case: `GET /api/auth/<fault>/refresh`. The server counts every request it
receives, which lets tests prove that bad input never reaches upstream.
It speaks raw HTTP/1.1 over asyncio streams so it can stall, truncate and
lie about lengths in ways an HTTP framework would not allow.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

FAULTS = {
    "stall": "accepts the connection and never answers",
    "headers-stall": "sends headers, then stalls before the body",
    "html500": "answers 500 with an HTML body",
    "html502": "answers 502 with an HTML body",
    "wrongshape": "answers 200 with JSON of the wrong shape",
    "truncated": "answers 200 with truncated JSON and closes the connection",
    "huge": "answers 200 with a body of 8 MiB",
    "redirect": "answers 302 to another loopback host, 127.0.0.2",
    "stack": "answers 500 with a Backstage error body that carries a stack",
    "ok": "answers 200 with a guest-like auth response",
}

OK_BODY = {
    "profile": {},
    "backstageIdentity": {
        "token": "h.e.s",
        "identity": {
            "type": "user",
            "userEntityRef": "user:development/guest",
            "ownershipEntityRefs": ["user:development/guest"],
        },
        "expiresInSeconds": 3600,
    },
}
STACK_MARKER = "at secretFunction (/srv/backstage/stack-marker.js:1:1)"
HUGE_BYTES = 8 * 1024 * 1024


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FaultServer:
    """Serve the faults on `host`, on a free port, in a background thread."""

    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    redirect_port: int | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/api/auth"

    def start(self) -> FaultServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._stop.wait()
            self._server.close()
            # Stalled handlers sleep for an hour; end them before the loop closes.
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":
                # A TLS ClientHello sent to this plain-HTTP server: answer as Node's HTTP
                # server does, with a plain 400, which the client reads as a TLS failure.
                writer.write(_response(400, b"", "text/plain"))
                await writer.drain()
                return
            request = await _read_request(reader, first)
            if request is None:
                return
            self.requests.append(request)
            fault = request.path.split("?")[0].split("/")[3] if request.path.count("/") >= 4 else ""
            await self._answer(fault, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _answer(self, fault: str, writer: asyncio.StreamWriter) -> None:
        answers: dict[str, Callable[[], bytes]] = {
            "html500": lambda: _response(
                500, b"<html><h1>Internal Server Error</h1></html>", "text/html"
            ),
            "html502": lambda: _response(502, b"<html><h1>Bad Gateway</h1></html>", "text/html"),
            "wrongshape": lambda: _response(200, b'{"profile": [1, 2, 3]}', "application/json"),
            "stack": lambda: _response(
                500,
                json.dumps(
                    {
                        "error": {"name": "Error", "message": "boom", "stack": STACK_MARKER},
                        "response": {"statusCode": 500},
                    }
                ).encode(),
                "application/json",
            ),
            "ok": lambda: _response(200, json.dumps(OK_BODY).encode(), "application/json"),
            "redirect": lambda: _response(
                302, b"", "text/plain", location=f"http://127.0.0.2:{self.redirect_port or 9}/steal"
            ),
        }
        if fault == "stall":
            await asyncio.sleep(3600)
        elif fault == "headers-stall":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            await writer.drain()
            await asyncio.sleep(3600)
        elif fault == "truncated":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                b'{"profile": {}, "backstageIdentity": {"tok'
            )
            await writer.drain()
        elif fault == "huge":
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {HUGE_BYTES}\r\n\r\n".encode()
            )
            chunk = b" " * 65536
            for _ in range(HUGE_BYTES // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        elif fault in answers:
            writer.write(answers[fault]())
            await writer.drain()
        else:
            body = json.dumps(
                {"error": {"name": "NotFoundError", "message": f"Unknown auth provider '{fault}'"}}
            ).encode()
            writer.write(_response(404, body, "application/json"))
            await writer.drain()


async def _read_request(reader: asyncio.StreamReader, first: bytes) -> RequestRecord | None:
    head = first + await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return None
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return RequestRecord(parts[0], parts[1], headers)


def _response(status: int, body: bytes, content_type: str, location: str | None = None) -> bytes:
    reasons = {
        200: "OK",
        400: "Bad Request",
        302: "Found",
        404: "Not Found",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }
    head = [
        f"HTTP/1.1 {status} {reasons.get(status, 'Status')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if location:
        head.append(f"Location: {location}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
