"""The REST adapter's OpenAPI document: its content, Spectral's lint and Schemathesis.

Spectral runs from ``tests/spectral`` (``npm ci`` on first use). Schemathesis
runs against a REST adapter on a loopback port, backed by the real Backstage
test backend, with the settings in ``tests/schemathesis.toml``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest
from pydantic import TypeAdapter

from backstage_auth.openapi import SessionCarriers, build_openapi
from backstage_auth.rest import OPERATIONS, SESSION_COOKIE, SESSION_HEADER
from backstage_auth.settings import Settings
from backstage_auth.validation import (
    CallbackUrl,
    Code,
    EnvName,
    ProviderId,
    SessionHandle,
    State,
)
from tests.conftest import stop_process
from tests.rest_server import RestServer, launch_rest_server
from tests.spectral_lint import lint_openapi

SCHEMATHESIS_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
SCHEMATHESIS_TIMEOUT_SECONDS = 300

# Operation id, method, path and query parameters of each resource. The env
# parameter of refresh and logout, and callback_url, mirror the tools' arguments.
EXPECTED_OPERATIONS = {
    "startproviderauth": ("get", "/v1/{provider}/start", {"flow", "env"}),
    "handleproviderframe": (
        "get",
        "/v1/{provider}/handler/frame",
        {"code", "state", "callback_url"},
    ),
    "refreshprovidertoken": ("get", "/v1/{provider}/refresh", {"optional", "env"}),
    "logoutprovider": ("post", "/v1/{provider}/logout", {"env"}),
}


def document_for(settings: Settings) -> dict[str, Any]:
    return build_openapi(
        [operation.doc for operation in OPERATIONS],
        settings,
        SessionCarriers(cookie=SESSION_COOKIE, header=SESSION_HEADER),
    )


def operations_of(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            found[operation["operationId"]] = (method, path, operation)
    return found


@pytest.fixture(scope="module")
def rest(backstage, tmp_path_factory) -> Iterator[RestServer]:
    server = launch_rest_server(
        tmp_path_factory.mktemp("rest-openapi"), BACKSTAGE_AUTH_URL=backstage.auth_url
    )
    yield server
    stop_process(server.process)


@pytest.mark.integration
def test_served_document_lints_clean(rest, tmp_path):
    with httpx2.Client(base_url=rest.rest_url, trust_env=False) as client:
        document = client.get("/openapi.json").json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document, indent=2))

    findings = lint_openapi(path)

    assert findings == [], json.dumps(findings, indent=2)


def test_document_with_bearer_token_lints_clean(tmp_path):
    settings = Settings(http_token="a-long-random-token", _env_file=None)
    document = document_for(settings)
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document, indent=2))

    findings = lint_openapi(path)

    assert findings == [], json.dumps(findings, indent=2)
    assert document["security"] == [{"bearerToken": []}]
    assert document["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_spectral_reports_warnings(tmp_path):
    # Proves the lint test can fail: a document without info.contact gets a warning.
    document = document_for(Settings(_env_file=None))
    del document["info"]["contact"]
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))

    findings = lint_openapi(path)

    assert [finding["code"] for finding in findings] == ["info-contact"]


def test_document_lists_the_four_operations():
    document = document_for(Settings(_env_file=None))
    operations = operations_of(document)

    assert document["openapi"] == "3.1.0"
    assert "security" not in document
    for operation_id, (method, path, query) in EXPECTED_OPERATIONS.items():
        found_method, found_path, operation = operations[operation_id]
        assert (found_method, found_path) == (method, path)
        parameters = {(p["name"], p["in"]) for p in operation["parameters"]}
        assert parameters == {("provider", "path"), ("X-Session-Handle", "header")} | {
            (name, "query") for name in query
        }
        for parameter in operation["parameters"]:
            assert parameter["description"], (operation_id, parameter["name"])
            assert "null" not in json.dumps(parameter["schema"]), parameter
        assert operation["tags"] == ["auth"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(operations) == set(EXPECTED_OPERATIONS) | {"getOpenApiDocument", "getHealth"}


def test_document_reuses_result_and_problem_models():
    document = document_for(Settings(_env_file=None))
    schemas = document["components"]["schemas"]
    operations = operations_of(document)

    results = {
        "startproviderauth": "StartResult",
        "handleproviderframe": "SessionResult",
        "refreshprovidertoken": "SessionResult",
        "logoutprovider": "LogoutResult",
    }
    for operation_id, model in results.items():
        schema = operations[operation_id][2]["responses"]["200"]["content"]["application/json"]
        assert schema["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert set(schemas) >= {"StartResult", "SessionResult", "LogoutResult", "Problem"}
    assert schemas["Problem"]["required"] == ["title", "status", "detail"]

    # The problem schema is written once and every error response refers to it.
    text = json.dumps(document)
    assert text.count('"application/problem+json"') == len(document["components"]["responses"])
    for response in document["components"]["responses"].values():
        media = response["content"]["application/problem+json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
    error_statuses = {"400", "401", "403", "404", "409", "421", "422", "502", "503", "504"}
    for operation_id in EXPECTED_OPERATIONS:
        assert set(operations[operation_id][2]["responses"]) == {"200"} | error_statuses


@pytest.mark.parametrize(
    ("annotated", "values"),
    [
        (ProviderId, ["oidc", "a", "-a", "_a", "a b", "a/b", "é", "", "a" * 64, "a" * 65]),
        (EnvName, ["development", "a.b", ".a", "a b", "", "a" * 64, "a" * 65, "ü"]),
        (Code, ["abc", "a b", "", "c" * 4096, "c" * 4097, "https://x", "ä", "a\t"]),
        (State, ["00ff", "00FF", "xyz", "", "0" * 4096, "0" * 4097, "0 1"]),
        (
            CallbackUrl,
            [
                "http://h/?state=00&code=1",
                "HTTPS://h/?state=00&code=1",
                "ftp://h/?state=00&code=1",
                "http://h/",
                "http:///?state=00&code=1",
                "http://h/?state=00&code=1 x",
                "http://h/?state=00&code=" + "1" * 8192,
                "",
            ],
        ),
        (SessionHandle, ["A" * 43, "a-_9", "a b", "", "a" * 128, "a" * 129, "a.b"]),
    ],
)
def test_schema_never_stricter_than_check(annotated, values):
    # Whatever the published schema rejects, the check rejects too, so a client
    # that validates against the document never sends what the server accepts.
    schema = TypeAdapter(annotated).json_schema()
    adapter = TypeAdapter(annotated)
    for value in values:
        schema_accepts = jsonschema.Draft202012Validator(schema).is_valid(value)
        try:
            adapter.validate_python(value)
            check_accepts = True
        except ValueError:
            check_accepts = False
        if not schema_accepts:
            assert not check_accepts, f"{value[:40]!r}: schema rejects it, check accepts it"


@pytest.mark.integration
def test_schemathesis_finds_no_failures(rest, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "--no-color",
            "run",
            f"{rest.rest_url}/openapi.json",
            "--seed",
            "20261204",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "5 selected / 5 total" in output, output
    assert " passed" in output, output
