"""Guest-refresh throughput with 1, 10 and 50 concurrent clients over streamable HTTP.

Each MCP client is a `LeanMcpClient`: one POST per call in the sessionless
2026-07-28 protocol, with its own connection. It does not validate results
against the output schema as the SDK's `Client` does, so the load generator
spends little of the machine's two cores and the servers' limits show. The
baseline is the same number of plain `httpx2` clients calling Backstage.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx2

from benchmarks.calls import CallFailedError, direct_client, direct_refresh
from benchmarks.config import BenchConfig
from benchmarks.procfs import cpu_seconds
from benchmarks.servers import CALL_TIMEOUT_SECONDS, HttpServer, ToolCall

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2026-07-28"
_CLIENT_META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "backstage-auth-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}

Caller = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Throughput:
    calls_per_second: float
    completed: int
    errors: int
    first_error: str | None
    # CPU milliseconds per completed call during the window, by process role:
    # "server", "backend" (the Backstage backend) and "load generator" (this process).
    cpu_ms_per_call: dict[str, float]


class LeanMcpClient:
    """Minimal MCP client for the sessionless 2026-07-28 protocol over streamable HTTP."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._ids = itertools.count(1)
        self._http = httpx2.AsyncClient(timeout=CALL_TIMEOUT_SECONDS, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call_tool(self, call: ToolCall) -> dict[str, Any]:
        """Send tools/call and return the result; raise `CallFailedError` unless it succeeded."""
        request_id = next(self._ids)
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": call.name, "arguments": call.arguments, "_meta": _CLIENT_META},
        }
        response = await self._http.post(
            self._url,
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": PROTOCOL_VERSION,
                "Mcp-Method": "tools/call",
                "Mcp-Name": call.name,
            },
        )
        if response.status_code != 200:
            raise CallFailedError(f"HTTP {response.status_code}: {response.text[:200]}")
        message = _json_rpc_message(response, request_id)
        if "error" in message:
            raise CallFailedError(f"JSON-RPC error: {message['error']}")
        result = message["result"]
        if result.get("isError"):
            raise CallFailedError(f"isError: {json.dumps(result.get('content'))[:200]}")
        return result


def _json_rpc_message(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """Read the response to `request_id` from a JSON body or from a server-sent event stream."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.json()
    for line in response.text.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[len("data:") :])
            if message.get("id") == request_id:
                return message
    raise CallFailedError("the event stream carried no response to the request")


async def measure_throughput(
    auth_url: str,
    config: BenchConfig,
    http_servers: dict[str, HttpServer],
    backend_pid: int | None = None,
) -> dict[tuple[str, int], Throughput]:
    """Measure every target at each concurrency level; targets take turns within a level.

    With `backend_pid`, the Backstage backend's CPU time per call is reported too.
    """
    results = {}
    for concurrency in config.concurrency_levels:
        logger.info("throughput: %d concurrent clients", concurrency)
        processes = {"load generator": os.getpid()}
        if backend_pid is not None:
            processes["backend"] = backend_pid
        results[("direct", concurrency)] = await _measure_with_cpu(
            direct_caller(auth_url), concurrency, config.throughput_seconds, processes
        )
        for key, server in http_servers.items():
            results[(key, concurrency)] = await _measure_with_cpu(
                mcp_caller(server),
                concurrency,
                config.throughput_seconds,
                processes | {"server": server.pid},
            )
    return results


async def _measure_with_cpu(
    open_caller: Callable[[], AbstractAsyncContextManager[Caller]],
    concurrency: int,
    seconds: float,
    processes: dict[str, int],
) -> Throughput:
    """Run the clients and add the CPU time per call of each of `processes` (role to pid)."""
    samplers = {role: partial(cpu_seconds, pid) for role, pid in processes.items()}
    run = await run_clients(open_caller, concurrency, seconds, samplers)
    cpu_ms_per_call = {role: run.sampled[role] * 1000 / max(run.completed, 1) for role in processes}
    return Throughput(
        run.completed / seconds, run.completed, run.errors, run.first_error, cpu_ms_per_call
    )


def direct_caller(auth_url: str) -> Callable[[], AbstractAsyncContextManager[Caller]]:
    @asynccontextmanager
    async def open_caller() -> AsyncIterator[Caller]:
        async with direct_client() as http:
            yield lambda: direct_refresh(http, auth_url, "guest")

    return open_caller


def mcp_caller(server: HttpServer) -> Callable[[], AbstractAsyncContextManager[Caller]]:
    @asynccontextmanager
    async def open_caller() -> AsyncIterator[Caller]:
        client = LeanMcpClient(server.url)
        try:
            yield lambda: client.call_tool(server.spec.guest_refresh)
        finally:
            await client.aclose()

    return open_caller


@dataclass(frozen=True)
class ClientRun:
    completed: int
    errors: int
    first_error: str | None
    # Change of each sampler's value from the window's opening to its closing.
    sampled: dict[str, float]


async def run_clients(
    open_caller: Callable[[], AbstractAsyncContextManager[Caller]],
    concurrency: int,
    seconds: float,
    samplers: dict[str, Callable[[], float]],
) -> ClientRun:
    """Run `concurrency` clients for `seconds` after each has made one unrecorded call.

    Calls that finish after the window closes are not counted. Every failed
    call counts as an error, including a failed unrecorded call. Each sampler,
    such as a process's CPU time, is read when the window opens and closes.
    """
    completed = 0
    errors = 0
    first_error: str | None = None
    ready = 0
    deadline = 0.0
    start = anyio.Event()
    at_start: dict[str, float] = {}
    at_end: dict[str, float] = {}

    def record_error(exc: Exception) -> None:
        nonlocal errors, first_error
        errors += 1
        if first_error is None:
            first_error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("throughput: first failed call: %s", first_error)

    async def sample_at_deadline() -> None:
        await start.wait()
        await anyio.sleep(deadline - time.perf_counter())
        at_end.update({name: sample() for name, sample in samplers.items()})

    async def client() -> None:
        nonlocal completed, ready, deadline
        async with open_caller() as call:
            try:
                await call()
            except Exception as exc:  # counted: the run reports errors, not exceptions
                record_error(exc)
            ready += 1
            if ready == concurrency:
                at_start.update({name: sample() for name, sample in samplers.items()})
                deadline = time.perf_counter() + seconds
                start.set()
            await start.wait()
            while time.perf_counter() < deadline:
                try:
                    await call()
                except Exception as exc:  # counted, as above
                    record_error(exc)
                    continue
                if time.perf_counter() <= deadline:
                    completed += 1

    async with anyio.create_task_group() as group:
        group.start_soon(sample_at_deadline)
        for _ in range(concurrency):
            group.start_soon(client)
    sampled = {name: at_end[name] - at_start[name] for name in samplers}
    return ClientRun(completed, errors, first_error, sampled)
