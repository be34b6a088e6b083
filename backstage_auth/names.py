"""Tool names, defined once so that listing, dispatch, docs and tests agree."""

from __future__ import annotations

from enum import StrEnum


class ToolName(StrEnum):
    START = "backstage-start-authentication-flow"
    CALLBACK = "backstage-handle-authentication-callback-popup"
    REFRESH = "backstage-refresh-authentication-token"
    LOGOUT = "backstage-logout-provider"
