"""Configuration read from environment variables, a `.env` file and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backstage_auth.validation import ENV_PATTERN

Transport = Literal["stdio", "streamable-http"]
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
    transport: Transport = Field("stdio", validation_alias=_env("BACKSTAGE_AUTH_TRANSPORT"))
    host: str = Field("127.0.0.1", validation_alias=_env("BACKSTAGE_AUTH_HOST"))
    port: int = Field(9090, ge=1, le=65535, validation_alias=_env("BACKSTAGE_AUTH_PORT"))

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
