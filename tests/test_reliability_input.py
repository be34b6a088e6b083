"""Bad input through a real MCP client: a clear error per case and no request upstream.

The upstream is the loopback fault server, which counts every request it receives.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from backstage_auth.names import ToolName
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server
from tests.fault_server import FaultServer
from tests.flows import text_of
from tests.reliability_report import REPORT

pytestmark = pytest.mark.anyio

CALLBACK = "http://127.0.0.1:7007/api/auth/oidc/handler/frame?code=abc&state=6e6f"

BAD_PROVIDERS = [
    "../catalog",
    "a/b",
    "%2e%2e",
    "..%2f",
    "github?x=1",
    "github#frag",
    "git\\hub",
    "git\x00hub",
    "git\x1bhub",
    "git\nhub",
    "gith\u0131b",
    "\uff47ithub",
    "",
    " ",
    "github ",
    "g" * 10_000,
    "https://127.0.0.1:7007/api/auth/github",
]

# (tool, arguments, field the error must name, text the error must contain)
CASES: list[tuple[ToolName, dict[str, Any], str, str]] = [
    *[
        (tool, {"provider": provider}, "provider", "provider")
        for provider in BAD_PROVIDERS
        for tool in ToolName
    ],
    (ToolName.START, {"provider": "oidc", "env": "dev elopment"}, "env", "printable ASCII"),
    (ToolName.START, {"provider": "oidc", "env": "e" * 65}, "env", "1 to 64"),
    (ToolName.START, {"provider": "oidc", "env": "dev\x00"}, "env", "printable ASCII"),
    (ToolName.START, {"provider": "oidc", "flow": "implicit"}, "flow", "popup"),
    (ToolName.START, {"provider": "oidc", "flow": "popup\n"}, "flow", "popup"),
    (ToolName.REFRESH, {"provider": "oidc", "env": "../x"}, "env", "env may contain only"),
    (ToolName.LOGOUT, {"provider": "oidc", "env": ""}, "env", "1 to 64"),
    (ToolName.CALLBACK, {"provider": "oidc", "code": CALLBACK}, "code", "callback_url instead"),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "c" * 5000, "state": "00"},
        "code",
        "1 to 4096",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "a\x00b", "state": "00"},
        "code",
        "printable ASCII",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "abc", "state": CALLBACK},
        "state",
        "callback_url instead",
    ),
    (ToolName.CALLBACK, {"provider": "oidc", "code": "abc", "state": "zz"}, "state", "hexadecimal"),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "abc", "state": "ab" * 3000},
        "state",
        "hexadecimal",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "callback_url": "handler/frame?code=a&state=00"},
        "callback_url",
        "full http(s) URL",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "callback_url": "http://127.0.0.1/x?state=00"},
        "callback_url",
        "no 'state' together with 'code'",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "callback_url": CALLBACK.replace("?", "?\n")},
        "callback_url",
        "line break",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "callback_url": CALLBACK + "x" * 9000},
        "callback_url",
        "at most 8192",
    ),
    (ToolName.CALLBACK, {"provider": "oidc"}, "state", "needs the URL the browser ended on"),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "abc"},
        "state",
        "needs the URL the browser ended on",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "code": "x", "callback_url": CALLBACK},
        "code",
        "differs from the 'code' in callback_url",
    ),
    (ToolName.REFRESH, {"provider": 123}, "provider", "valid string"),
    (ToolName.REFRESH, {"provider": ["guest"]}, "provider", "valid string"),
    (ToolName.REFRESH, {"provider": "guest", "optional": "maybe"}, "optional", "valid boolean"),
    (ToolName.REFRESH, {"provider": "guest", "optional": 7}, "optional", "valid boolean"),
    (ToolName.START, {}, "provider", "Field required"),
    (ToolName.LOGOUT, {"env": "development"}, "provider", "Field required"),
    (
        ToolName.REFRESH,
        {"provider": "guest", "session_handle": "A" * 43},
        "session_handle",
        "unknown or has expired",
    ),
    (
        ToolName.LOGOUT,
        {"provider": "oidc", "session_handle": "not a handle"},
        "session_handle",
        "exact 'session_handle'",
    ),
    (
        ToolName.CALLBACK,
        {"provider": "oidc", "callback_url": CALLBACK, "session_handle": "B" * 43},
        "session_handle",
        "unknown or has expired",
    ),
]


def case_id(case: tuple[ToolName, dict[str, Any], str, str]) -> str:
    tool, arguments, field, _ = case
    value = repr(arguments.get(field, "<missing>"))
    return f"{tool.split('-')[1]}-{field}-{value[:24]}"


@pytest.fixture(scope="module")
def counting_upstream():
    with FaultServer() as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
async def test_bad_input_rejected_before_upstream(counting_upstream, case):
    tool, arguments, field, expected = case
    settings = Settings(auth_url=counting_upstream.auth_url, _env_file=None)
    before = len(counting_upstream.requests)

    async with Client(create_server(settings)) as client:
        result = await client.call_tool(tool, arguments)

    reached = len(counting_upstream.requests) - before
    text = text_of(result)
    shown = repr(arguments.get(field, "<missing>"))
    REPORT.bad_inputs.append(
        (tool, field, shown if len(shown) <= 40 else shown[:37] + "...", result.is_error, reached)
    )
    assert result.is_error, f"accepted: {result.structured_content}"
    assert field in text
    assert expected in text
    assert reached == 0
