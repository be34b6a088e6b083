"""The REST adapter's OpenAPI 3.1 document, built from its operations and models.

Parameter schemas come from the pydantic models that parse the requests, and
response schemas from the result models the tools return too, so the document
cannot disagree with the code that serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from backstage_auth import __version__
from backstage_auth.problems import PROBLEM_MEDIA_TYPE, Problem
from backstage_auth.settings import Settings
from backstage_auth.validation import SessionHandle

_SCHEMA_REF = "#/components/schemas/{model}"
_AUTH_TAG = "auth"
_SERVICE_TAG = "service"

# Error statuses of the /v1 resources, each one documented once as a reusable response.
_ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "400": (
        "BadRequest",
        "Backstage rejected the request as invalid, such as flow 'redirect' without a "
        "redirect URL.",
    ),
    "401": (
        "Unauthorized",
        "No usable session: the session handle or cookie is unknown or expired, the session "
        "is not signed in to the provider, or Backstage rejected the sign-in. Also sent when "
        "the server requires a bearer token and the request lacks it. A stale session cookie "
        "is cleared.",
    ),
    "403": (
        "Forbidden",
        "Backstage refused the request, such as an OAuth state that does not decode, or the "
        "browser's Origin header is not allowed.",
    ),
    "404": (
        "NotFound",
        "The provider or environment is not configured in Backstage, or the provider lacks "
        "this operation (the guest provider has only refresh).",
    ),
    "409": ("Conflict", "Backstage reported a conflict."),
    "421": (
        "MisdirectedRequest",
        "The request's Host header is not in the server's allowed hosts.",
    ),
    "422": (
        "UnprocessableContent",
        "A parameter failed its check, so nothing was sent to Backstage; invalid_params "
        "lists each one.",
    ),
    "502": (
        "BadGateway",
        "Backstage could not be reached, the TLS handshake with it failed, or it answered "
        "with a server error or an answer this server cannot read.",
    ),
    "503": ("ServiceUnavailable", "Backstage is starting or shutting down."),
    "504": ("GatewayTimeout", "Backstage did not respond within the configured timeout."),
}
_GUARD_STATUSES = ("401", "403", "421")


@dataclass(frozen=True)
class OperationDoc:
    """Documentation of one REST operation: its route, texts, parameters and result."""

    operation_id: str
    method: str
    path: str
    summary: str
    description: str
    parameters: type[BaseModel]
    result: type[BaseModel]
    sets_cookie: bool


@dataclass(frozen=True)
class SessionCarriers:
    """Names of the cookie and the header that carry a REST client's session handle."""

    cookie: str
    header: str


def build_openapi(
    operations: list[OperationDoc], settings: Settings, session: SessionCarriers
) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of the REST adapter as served with `settings`."""
    models = [operation.result for operation in operations] + [Problem]
    _, definitions = models_json_schema(
        [(model, "serialization") for model in dict.fromkeys(models)], ref_template=_SCHEMA_REF
    )

    paths: dict[str, Any] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, session
        )
    paths["/openapi.json"] = {"get": _openapi_operation()}
    paths["/healthz"] = {"get": _healthz_operation(settings)}

    components: dict[str, Any] = {
        "schemas": definitions["$defs"],
        "responses": {
            name: _error_response(status, text) for status, (name, text) in _ERROR_RESPONSES.items()
        },
        "headers": {
            "SessionCookie": {
                "description": (
                    f"Sets or clears the {session.cookie} cookie: an opaque session handle, "
                    "HttpOnly, Path=/v1, SameSite=Lax, and Secure over https."
                ),
                "schema": {"type": "string"},
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": _info(),
        "servers": [{"url": "/", "description": "The server that serves this document."}],
        "tags": [
            {"name": _AUTH_TAG, "description": "Sign-in, refresh and sign-out with Backstage."},
            {"name": _SERVICE_TAG, "description": "Health check and this document."},
        ],
        "paths": paths,
        "components": components,
    }
    if settings.http_token is not None:
        components["securitySchemes"] = {
            "bearerToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in the server's BACKSTAGE_AUTH_HTTP_TOKEN.",
            }
        }
        document["security"] = [{"bearerToken": []}]
    return document


def _info() -> dict[str, Any]:
    return {
        "title": "Backstage auth REST adapter",
        "version": __version__,
        "summary": "Sign in to Backstage through its auth API, with the cookies kept for you.",
        "description": (
            "The REST surface of backstage-auth-mcp: the four operations of Backstage's auth "
            "API per provider, with the Backstage cookies kept in a server-side session.\n\n"
            "1. GET /v1/{provider}/start returns authorization_url; the user opens it and "
            "signs in.\n"
            "2. The browser ends on a .../handler/frame?code=...&state=... URL. Pass it as "
            "callback_url to GET /v1/{provider}/handler/frame.\n"
            "3. GET /v1/{provider}/refresh renews the identity; POST /v1/{provider}/logout "
            "signs out.\n\n"
            "The guest provider needs only GET /v1/guest/refresh. Clients that keep cookies "
            "need nothing else; other clients send the session_handle of the start result in "
            "the X-Session-Handle header. Errors are RFC 9457 problem details."
        ),
        "contact": {"name": "backstage-auth-mcp maintainers"},
        "license": {"name": "Apache License 2.0", "identifier": "Apache-2.0"},
    }


def _operation(operation: OperationDoc, session: SessionCarriers) -> dict[str, Any]:
    result_ref = _SCHEMA_REF.format(model=operation.result.__name__)
    success: dict[str, Any] = {
        "description": operation.summary + ": the result.",
        "content": {"application/json": {"schema": {"$ref": result_ref}}},
    }
    if operation.sets_cookie:
        success["headers"] = {"Set-Cookie": {"$ref": "#/components/headers/SessionCookie"}}

    responses: dict[str, Any] = {"200": success}
    for status, (name, _) in _ERROR_RESPONSES.items():
        responses[status] = {"$ref": f"#/components/responses/{name}"}
    return {
        "operationId": operation.operation_id,
        "tags": [_AUTH_TAG],
        "summary": operation.summary,
        "description": operation.description,
        "parameters": [*_parameters(operation.parameters), _session_header(session)],
        "responses": responses,
    }


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Describe each model field as a path (provider) or query parameter."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in model.model_fields.items():
        field_schema = _parameter_schema(schema["properties"][name])
        description = field_schema.pop("description", None) or field.description
        location = "path" if name == "provider" else "query"
        parameters.append(
            {
                "name": name,
                "in": location,
                "required": location == "path" or field.is_required(),
                "description": description,
                "schema": field_schema,
            }
        )
    return parameters


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop what a query parameter cannot carry: null, a null default and pydantic's title."""
    schema = dict(schema)
    if "anyOf" in schema:
        branches = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
        if len(branches) == 1:
            schema = branches[0] | schema
        else:
            schema["anyOf"] = branches
    if schema.get("default", ...) is None:
        del schema["default"]
    schema.pop("title", None)
    return schema


def _session_header(session: SessionCarriers) -> dict[str, Any]:
    return {
        "name": session.header,
        "in": "header",
        "required": False,
        "description": (
            "session_handle from an earlier start or callback result. Needed only by clients "
            f"that keep no cookies; a client that keeps the {session.cookie} cookie leaves it "
            "out."
        ),
        "schema": TypeAdapter(SessionHandle).json_schema(),
    }


def _error_response(status: str, description: str) -> dict[str, Any]:
    problem_ref = _SCHEMA_REF.format(model=Problem.__name__)
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": problem_ref}}},
    }
    if status == "401":
        response["headers"] = {"Set-Cookie": {"$ref": "#/components/headers/SessionCookie"}}
    return response


def _openapi_operation() -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "This OpenAPI 3.1 document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    for status in _GUARD_STATUSES:
        responses[status] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status][0]}"}
    return {
        "operationId": "getOpenApiDocument",
        "tags": [_SERVICE_TAG],
        "summary": "Get this OpenAPI document",
        "description": "Returns this document, generated from the models the server uses.",
        "responses": responses,
    }


def _healthz_operation(settings: Settings) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": "getHealth",
        "tags": [_SERVICE_TAG],
        "summary": "Check liveness",
        "description": (
            "Returns status 'ok' while the server runs. It checks nothing upstream, and needs "
            "no bearer token and no allowed Host."
        ),
        "responses": {
            "200": {
                "description": "The server is running.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"status": {"type": "string", "enum": ["ok"]}},
                            "required": ["status"],
                        }
                    }
                },
            }
        },
    }
    if settings.http_token is not None:
        operation["security"] = []
    return operation
