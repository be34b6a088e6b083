"""A stand-in Backstage whose tokens and cookies are known marker strings.

Searching results and logs for the markers proves that no secret leaks. The
routes answer in Backstage's formats: /start redirects and sets cookies,
/handler/frame returns the popup page, /refresh returns JSON, /logout clears
cookies. Provider "broken" fails every route with a stack in the error body.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from urllib.parse import quote, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

MARKERS = {
    "api_key": "APIKEY-MARKER-7f3a",
    "access_token": "ACCESS-MARKER-91bd",
    "id_token": "IDTOKEN-MARKER-c2e4",
    "backstage_token_signature": "BSTOKEN-MARKER-5d80",
    "nonce_cookie": "NONCE-COOKIE-MARKER-0a1b",
    "session_cookie": "SID-COOKIE-MARKER-3c4d",
    "refresh_cookie": "REFRESH-COOKIE-MARKER-6e7f",
    "stack": "STACK-MARKER-8a9b",
}
COOKIE_MARKERS = ("nonce_cookie", "session_cookie", "refresh_cookie")
TOKEN_MARKERS = ("access_token", "id_token", "backstage_token_signature")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


BACKSTAGE_TOKEN = ".".join(
    (
        _b64({"alg": "ES256", "typ": "vnd.backstage.user"}),
        _b64(
            {
                "iss": "http://127.0.0.1/api/auth",
                "sub": "user:default/marker",
                "aud": "backstage",
                "iat": 1_800_000_000,
                "exp": 1_800_003_600,
            }
        ),
        MARKERS["backstage_token_signature"],
    )
)
AUTH_RESPONSE = {
    "profile": {"email": "marker@example.test", "displayName": "Marker"},
    "providerInfo": {
        "accessToken": MARKERS["access_token"],
        "idToken": MARKERS["id_token"],
        "scope": "openid",
        "expiresInSeconds": 3600,
    },
    "backstageIdentity": {
        "token": BACKSTAGE_TOKEN,
        "identity": {
            "type": "user",
            "userEntityRef": "user:default/marker",
            "ownershipEntityRefs": ["user:default/marker"],
        },
        "expiresInSeconds": 3600,
    },
}


def _error(status: int, name: str, message: str) -> JSONResponse:
    body = {
        "error": {"name": name, "message": message, "stack": MARKERS["stack"]},
        "response": {"statusCode": status},
    }
    return JSONResponse(body, status_code=status)


class MarkerBackstage:
    """Serve the marker routes on a free 127.0.0.1 port in a background thread."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.received_cookies: list[str] = []
        app = Starlette(
            routes=[
                Route("/api/auth/{provider}/start", self.start),
                Route("/api/auth/{provider}/handler/frame", self.frame),
                Route("/api/auth/{provider}/refresh", self.refresh),
                Route("/api/auth/{provider}/logout", self.logout, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/auth"

    def __enter__(self) -> MarkerBackstage:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("marker Backstage did not start within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def _note(self, request: Request) -> None:
        self.received_cookies.append(request.headers.get("cookie", ""))

    async def start(self, request: Request) -> Response:
        self._note(request)
        provider = request.path_params["provider"]
        if provider == "broken":
            return _error(500, "Error", "start broke")
        state = urlencode({"nonce": "n", "env": request.query_params.get("env", "")}).encode().hex()
        location = f"http://127.0.0.1:{self.port}/authorize?" + urlencode({"state": state})
        response = Response(status_code=302, headers={"location": location})
        response.set_cookie(
            f"{provider}-nonce",
            MARKERS["nonce_cookie"],
            path=f"/api/auth/{provider}/handler",
            httponly=True,
        )
        response.set_cookie("connect.sid", MARKERS["session_cookie"], path="/", httponly=True)
        return response

    async def frame(self, request: Request) -> Response:
        self._note(request)
        provider = request.path_params["provider"]
        if provider == "broken" or request.query_params.get("code") == "deny":
            payload = {
                "type": "authorization_response",
                "error": {"name": "Error", "message": "Authentication rejected, denied"},
            }
        else:
            payload = {"type": "authorization_response", "response": AUTH_RESPONSE}
        literal = quote(json.dumps(payload), safe="-_.!~*()")
        page = (
            f"<html><body><script>var a = decodeURIComponent('{literal}');</script></body></html>"
        )
        response = HTMLResponse(page)
        if "response" in payload:
            response.set_cookie(
                f"{provider}-refresh-token",
                MARKERS["refresh_cookie"],
                path=f"/api/auth/{provider}",
                httponly=True,
            )
        return response

    async def refresh(self, request: Request) -> Response:
        self._note(request)
        provider = request.path_params["provider"]
        if provider == "broken" or f"{provider}-refresh-token" not in request.cookies:
            return _error(
                401,
                "AuthenticationError",
                "Refresh failed; caused by InputError: Missing session cookie",
            )
        return JSONResponse(AUTH_RESPONSE)

    async def logout(self, request: Request) -> Response:
        self._note(request)
        provider = request.path_params["provider"]
        if provider == "broken":
            return _error(500, "Error", "logout broke")
        response = Response(status_code=200)
        response.delete_cookie(f"{provider}-refresh-token", path=f"/api/auth/{provider}")
        return response
