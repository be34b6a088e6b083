"""Problem details (RFC 9457) for the REST adapter's error responses.

Every error the adapter returns is an `application/problem+json` body of the
`Problem` model, whose `detail` states what failed and what to do next. The
problem type is always `about:blank`, so `title` is the HTTP status phrase and
`status` alone tells the kind of failure. Bodies never carry a stack trace,
a token or a cookie value.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Literal

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Headers on every REST response: results carry identities and session handles.
NO_STORE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class InvalidParameter(BaseModel):
    """One request parameter that failed its check."""

    name: str = Field(description="Parameter name, e.g. 'env' or 'X-Session-Handle'.")
    location: Literal["path", "query", "header"] = Field(
        description="Where the parameter was sent."
    )
    reason: str = Field(description="The rule the value broke, and how to fix it.")


class Problem(BaseModel):
    """An error response, as RFC 9457 problem details."""

    type: str = Field(
        "about:blank",
        description="Problem type, always 'about:blank', so the status tells the kind of failure.",
    )
    title: str = Field(description="HTTP status phrase, e.g. 'Unauthorized'.")
    status: int = Field(ge=400, le=599, description="HTTP status code of this response.")
    detail: str = Field(description="What failed, followed by what to do next.")
    next_step: str | None = Field(
        None, description="What to do next, as in the 'next_step' of a successful result."
    )
    invalid_params: list[InvalidParameter] | None = Field(
        None, description="The parameters that failed their checks; only in 422 responses."
    )


def problem(
    status: int,
    message: str,
    next_step: str,
    *,
    invalid_params: list[InvalidParameter] | None = None,
) -> Problem:
    """Build a problem whose detail joins the failure and the next step."""
    # Backstage's messages, quoted in upstream errors, often end without a full stop.
    if not message.endswith((".", "!", "?")):
        message += "."
    return Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=f"{message} Next step: {next_step}",
        next_step=next_step,
        invalid_params=invalid_params,
    )


def problem_response(body: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Render a problem as an `application/problem+json` response that no cache keeps."""
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=body.status,
        headers={**NO_STORE_HEADERS, **(headers or {})},
        media_type=PROBLEM_MEDIA_TYPE,
    )
