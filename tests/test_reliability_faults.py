"""Upstream faults: each becomes an isError result within the timeout, and serving goes on.

The faults come from the loopback fault server (tests/fault_server.py), since a
real Backstage cannot stall, truncate or redirect on demand.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time

import anyio
import pytest
import trustme
from mcp import Client, StdioServerParameters

from backstage_auth.names import ToolName
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server
from tests.conftest import REPO_ROOT, server_env
from tests.fault_server import FAULTS, STACK_MARKER, FaultServer
from tests.flows import text_of
from tests.reliability_report import REPORT

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0
# The call may take the timeout plus scheduling slack on a loaded 2-core machine.
DEADLINE = TIMEOUT + 2.0

EXPECTED = {
    "stall": "did not respond",
    "headers-stall": "did not respond",
    "html500": "HTTP 500 without its JSON error body",
    "html502": "HTTP 502 without its JSON error body",
    "wrongshape": "unexpected shape",
    "truncated": "closed the connection before its answer",
    "huge": "larger than 1048576 bytes",
    "redirect": "a redirect is never followed",
    "stack": "HTTP 500 with Error: boom",
}


@pytest.fixture(scope="module")
def other_host():
    """A server on 127.0.0.2 that must never receive a request."""
    with FaultServer(host="127.0.0.2") as server:
        yield server


@pytest.fixture(scope="module")
def faults(other_host):
    with FaultServer(redirect_port=other_host.port) as server:
        yield server


def settings_for(url: str, **options) -> Settings:
    return Settings(auth_url=url, timeout_seconds=TIMEOUT, _env_file=None, **options)


async def call_timed(client: Client, tool: ToolName, arguments: dict) -> tuple[object, float]:
    started = time.monotonic()
    result = await client.call_tool(tool, arguments)
    return result, time.monotonic() - started


def record(fault: str, transport: str, result, elapsed: float, next_ok: bool) -> None:
    text = text_of(result)
    message = text.split(": ", 1)[-1].split(" Next step:")[0]
    message = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", message)
    REPORT.faults.append(
        (
            fault,
            transport,
            message if len(message) <= 110 else message[:107] + "...",
            result.is_error and elapsed < DEADLINE,
            "Traceback" not in text,
            next_ok,
        )
    )


# A 200 answer ends a logout successfully whatever its JSON says, so "wrongshape"
# is a fault only for refresh.
CASES = [(ToolName.REFRESH, fault) for fault in sorted(EXPECTED)] + [
    (ToolName.LOGOUT, fault) for fault in sorted(EXPECTED) if fault != "wrongshape"
]


@pytest.mark.parametrize(("tool", "fault"), CASES)
async def test_fault_gives_error_and_server_goes_on(faults, other_host, caplog, tool, fault):
    settings = settings_for(faults.auth_url, api_key="key-marker-123")
    caplog.set_level(logging.DEBUG)

    async with Client(create_server(settings)) as client:
        result, elapsed = await call_timed(client, tool, {"provider": fault})
        after = await client.call_tool(ToolName.REFRESH, {"provider": "ok"})

    text = text_of(result)
    if tool == ToolName.REFRESH:
        record(fault, "in-process", result, elapsed, not after.is_error)
    assert result.is_error
    assert EXPECTED[fault] in text
    assert elapsed < DEADLINE
    assert "Traceback" not in text
    assert STACK_MARKER not in text
    assert "key-marker-123" not in text + caplog.text
    assert not any(record.exc_info for record in caplog.records)
    assert not after.is_error
    assert other_host.requests == []


async def test_bearer_key_only_to_configured_host(faults, other_host):
    settings = settings_for(faults.auth_url, api_key="key-marker-123")
    before = len(faults.requests)

    async with Client(create_server(settings)) as client:
        await client.call_tool(ToolName.REFRESH, {"provider": "redirect"})
        await client.call_tool(ToolName.LOGOUT, {"provider": "redirect"})

    sent = faults.requests[before:]
    assert [request.headers.get("authorization") for request in sent] == [
        "Bearer key-marker-123",
        "Bearer key-marker-123",
    ]
    assert other_host.requests == []


async def test_connection_refused(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_for(f"http://127.0.0.1:{port}/api/auth")

    async with Client(create_server(settings)) as client:
        result, elapsed = await call_timed(client, ToolName.REFRESH, {"provider": "guest"})
        again, _ = await call_timed(client, ToolName.REFRESH, {"provider": "guest"})

    record(
        "refused",
        "in-process",
        result,
        elapsed,
        again.is_error and "Could not connect" in text_of(again),
    )
    assert result.is_error
    assert "Could not connect to Backstage" in text_of(result)
    assert "Check that Backstage is running" in text_of(result)


async def test_https_against_plain_http(faults):
    settings = settings_for(faults.auth_url.replace("http://", "https://"))

    async with Client(create_server(settings)) as client:
        result, elapsed = await call_timed(client, ToolName.REFRESH, {"provider": "ok"})

    text = text_of(result)
    record("https-to-http", "in-process", result, elapsed, True)
    assert result.is_error
    assert "TLS handshake with Backstage failed" in text
    assert "set BACKSTAGE_AUTH_URL to an http:// URL" in text


@pytest.fixture(scope="module")
def tls_upstream():
    authority = trustme.CA()
    context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with FaultServer(tls=context) as server:
        yield server, authority


async def test_self_signed_certificate_rejected(tls_upstream):
    server, _ = tls_upstream
    async with Client(create_server(settings_for(server.auth_url))) as client:
        result, elapsed = await call_timed(client, ToolName.REFRESH, {"provider": "ok"})

    record("untrusted-cert", "in-process", result, elapsed, True)
    assert result.is_error
    assert "certificate verification failed" in text_of(result)
    assert "BACKSTAGE_AUTH_CA_BUNDLE" in text_of(result)


async def test_ca_bundle_makes_tls_work(tls_upstream, tmp_path):
    server, authority = tls_upstream
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))

    async with Client(create_server(settings_for(server.auth_url, ca_bundle=bundle))) as client:
        result = await client.call_tool(ToolName.REFRESH, {"provider": "ok"})

    assert not result.is_error, text_of(result)
    assert (
        result.structured_content["backstage_identity"]["user_entity_ref"]
        == "user:development/guest"
    )


async def test_verification_off_works_with_warning(tls_upstream, caplog):
    server, _ = tls_upstream
    caplog.set_level(logging.WARNING)

    async with Client(create_server(settings_for(server.auth_url, verify_tls=False))) as client:
        result = await client.call_tool(ToolName.REFRESH, {"provider": "ok"})

    assert not result.is_error, text_of(result)
    assert "TLS certificate verification is OFF" in caplog.text


async def test_faults_over_stdio_keep_process_serving(faults):
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[str(REPO_ROOT / "server.py")],
        cwd=str(REPO_ROOT),
        env=server_env(BACKSTAGE_AUTH_URL=faults.auth_url, BACKSTAGE_AUTH_TIMEOUT=str(TIMEOUT)),
    )
    async with Client(parameters) as client:
        for fault in ("stall", "huge", "truncated", "redirect"):
            result, elapsed = await call_timed(client, ToolName.REFRESH, {"provider": fault})
            after = await client.call_tool(ToolName.REFRESH, {"provider": "ok"})
            record(fault, "stdio", result, elapsed, not after.is_error)
            assert result.is_error
            assert EXPECTED[fault] in text_of(result)
            assert elapsed < DEADLINE
            assert not after.is_error


def test_every_fault_is_described():
    assert set(EXPECTED) <= set(FAULTS)
    assert anyio  # the anyio pytest plugin runs the async tests in this module
