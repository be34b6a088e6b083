"""Configuration read from environment variables, a `.env` file and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backstage_auth.names import ToolName
from backstage_auth.validation import ENV_PATTERN

Transport = Literal["stdio", "streamable-http"]
Surface = Literal["mcp", "rest", "both"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# A Backstage backend started with `yarn start` serves plain HTTP on port 7007.
DEFAULT_AUTH_URL = "http://localhost:7007/api/auth"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Server settings.

    Every field reads the environment variable named in its alias; the CLI
    overrides the transport fields. Invalid values raise `pydantic.ValidationError`
    at start-up, naming the variable.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    auth_url: str = Field(
        DEFAULT_AUTH_URL,
        validation_alias=_env("BACKSTAGE_AUTH_URL"),
        description="Base URL of Backstage's auth API, including the /api/auth mount path.",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("BACKSTAGE_API_KEY"),
        description="Sent as 'Authorization: Bearer' to the Backstage host, and to no other host.",
    )
    default_env: str = Field(
        "development",
        validation_alias=_env("BACKSTAGE_AUTH_ENV"),
        pattern=ENV_PATTERN,
        description="Backstage auth environment used when a tool call gives none.",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        validation_alias=_env("BACKSTAGE_AUTH_TIMEOUT"),
        description="Timeout for one upstream request, in seconds.",
    )
    ca_bundle: Path | None = Field(
        None,
        validation_alias=_env("BACKSTAGE_AUTH_CA_BUNDLE"),
        description="PEM file of CA certificates that sign the Backstage host's certificate.",
    )
    verify_tls: bool = Field(
        True,
        validation_alias=_env("BACKSTAGE_AUTH_VERIFY_TLS"),
        description="Verify the Backstage host's TLS certificate. Switch off only for testing.",
    )
    token_issuer: str | None = Field(
        None,
        validation_alias=_env("BACKSTAGE_AUTH_TOKEN_ISSUER"),
        description=(
            "Expected 'iss' of Backstage identity tokens; BACKSTAGE_AUTH_URL when unset. Set it "
            "when Backstage's backend.baseUrl differs from the URL this server uses."
        ),
    )
    reveal_tokens: bool = Field(
        False,
        validation_alias=_env("BACKSTAGE_AUTH_REVEAL_TOKENS"),
        description="Include raw access, ID and Backstage tokens in tool results.",
    )
    session_idle_seconds: float = Field(
        1800.0,
        gt=0,
        validation_alias=_env("BACKSTAGE_AUTH_SESSION_IDLE_SECONDS"),
        description="Idle time after which an upstream session and its cookies are dropped.",
    )
    max_sessions: int = Field(
        1000,
        ge=1,
        validation_alias=_env("BACKSTAGE_AUTH_MAX_SESSIONS"),
        description="Maximum number of upstream sessions kept; the least recently used goes first.",
    )
    max_response_bytes: int = Field(
        1_048_576,
        ge=1024,
        validation_alias=_env("BACKSTAGE_AUTH_MAX_RESPONSE_BYTES"),
        description="Largest upstream response body read, in bytes.",
    )
    log_level: LogLevel = Field(
        "INFO",
        validation_alias=_env("BACKSTAGE_AUTH_LOG_LEVEL"),
        description="Log level of the stderr log.",
    )
    read_only: bool = Field(
        False,
        validation_alias=_env("BACKSTAGE_AUTH_READ_ONLY"),
        description="Serve only tools whose readOnly hint is true; logout is then absent.",
    )
    tools: Annotated[list[ToolName] | None, NoDecode] = Field(
        None,
        validation_alias=_env("BACKSTAGE_AUTH_TOOLS"),
        description="Comma-separated allowlist of tool names; all tools when unset.",
    )
    surface: Surface = Field(
        "mcp",
        validation_alias=_env("BACKSTAGE_AUTH_SURFACE"),
        description=(
            "What to serve: 'mcp' (the MCP server), 'rest' (the REST adapter) or 'both' "
            "(REST and MCP over streamable HTTP in one process)."
        ),
    )
    transport: Transport = Field("stdio", validation_alias=_env("BACKSTAGE_AUTH_TRANSPORT"))
    host: str = Field("127.0.0.1", validation_alias=_env("BACKSTAGE_AUTH_HOST"))
    port: int = Field(9090, ge=1, le=65535, validation_alias=_env("BACKSTAGE_AUTH_PORT"))
    rest_port: int = Field(
        8080,
        ge=1,
        le=65535,
        validation_alias=_env("BACKSTAGE_AUTH_REST_PORT"),
        description="Port of the REST adapter.",
    )
    http_token: SecretStr | None = Field(
        None,
        validation_alias=_env("BACKSTAGE_AUTH_HTTP_TOKEN"),
        description="Bearer token HTTP clients must send; no token check when unset.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("BACKSTAGE_AUTH_ALLOWED_HOSTS"),
        description="Comma-separated Host values accepted besides loopback; 'name:*' for any port.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("BACKSTAGE_AUTH_ALLOWED_ORIGINS"),
        description="Comma-separated browser Origins accepted besides loopback ones.",
    )
    allow_unauthenticated_remote: bool = Field(
        False,
        validation_alias=_env("BACKSTAGE_AUTH_ALLOW_UNAUTHENTICATED_REMOTE"),
        description="Allow binding a non-loopback address without BACKSTAGE_AUTH_HTTP_TOKEN.",
    )

    @field_validator("auth_url")
    @classmethod
    def _check_auth_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"BACKSTAGE_AUTH_URL must be an http(s) URL such as {DEFAULT_AUTH_URL!r}, "
                f"got {value!r}"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "BACKSTAGE_AUTH_URL must not contain credentials; put the key in "
                "BACKSTAGE_API_KEY instead"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"BACKSTAGE_AUTH_URL must not contain a query or fragment, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("tools", mode="wrap")
    @classmethod
    def _name_unknown_tools(cls, value: object, handler: Any) -> object:
        """Reject unknown tool names with a message that lists the valid ones."""
        items = cls._split_commas(value)
        known = [str(name) for name in ToolName]
        if isinstance(items, list):
            unknown = [item for item in items if item not in known]
            if unknown:
                raise ValueError(
                    f"unknown tool name(s) {', '.join(map(repr, unknown))}; "
                    f"valid names are {', '.join(known)}"
                )
        return handler(items)

    @field_validator("tools", mode="after")
    @classmethod
    def _require_tools(cls, value: list[ToolName] | None) -> list[ToolName] | None:
        if value is not None and not value:
            raise ValueError("BACKSTAGE_AUTH_TOOLS must name at least one tool when set")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_surfaces(self) -> Settings:
        """Serve MCP over streamable HTTP next to REST, on a port of its own."""
        if self.surface == "both":
            if self.transport == "stdio" and "transport" in self.model_fields_set:
                raise ValueError(
                    "surface 'both' serves MCP over streamable HTTP next to REST, so leave "
                    "out the stdio transport (--transport, BACKSTAGE_AUTH_TRANSPORT) or serve "
                    "the surfaces from two processes"
                )
            self.transport = "streamable-http"
        if self.serves_mcp_http and self.serves_rest and self.port == self.rest_port:
            raise ValueError(
                f"the MCP port and the REST port are both {self.port}, so give them "
                "different values (--port, --rest-port)"
            )
        return self

    @property
    def serves_rest(self) -> bool:
        return self.surface in ("rest", "both")

    @property
    def serves_mcp_http(self) -> bool:
        return self.surface in ("mcp", "both") and self.transport == "streamable-http"
