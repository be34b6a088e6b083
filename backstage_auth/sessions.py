"""Upstream sessions: one Backstage cookie jar per MCP or REST client.

A session is found in one of two ways:

* by its owner, a key for the client's transport session (the stdio process,
  or an MCP session id on streamable HTTP), so calls need no extra argument;
* by its handle, an unguessable string that start and callback return, for
  clients without a transport session (the sessionless 2026-07-28 protocol).

A session created for one owner is refused to any other owner, so a handle
copied between two clients that both have transport sessions is useless.
Sessions created without an owner are bearer sessions: the handle alone
grants access. The store is bounded in count (least recently used first out)
and in idle time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2

from backstage_auth.errors import SessionNotFoundError
from backstage_auth.models import ProviderStatus

logger = logging.getLogger(__name__)

# Owner key of the single client of a stdio process or an in-process client.
LOCAL_OWNER = "local"


@dataclass
class UpstreamSession:
    """One client's Backstage cookies."""

    handle: str
    owner: str | None
    last_used: float
    cookies: httpx2.Cookies = field(default_factory=httpx2.Cookies)
    signed_in: dict[str, ProviderStatus] = field(default_factory=dict)
    pending_sign_ins: set[str] = field(default_factory=set)

    @property
    def fingerprint(self) -> str:
        """Short, non-secret id of this session for log lines."""
        return hashlib.sha256(self.handle.encode()).hexdigest()[:8]


class SessionStore:
    """Bounded, idle-expiring map of session handles to upstream sessions."""

    def __init__(
        self,
        *,
        max_sessions: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_sessions = max_sessions
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._by_handle: OrderedDict[str, UpstreamSession] = OrderedDict()
        self._by_owner: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_handle)

    def create(self, owner: str | None) -> UpstreamSession:
        """Create a session, evicting the least recently used one when the store is full."""
        self._expire_idle()
        while len(self._by_handle) >= self._max_sessions:
            _, oldest = self._by_handle.popitem(last=False)
            self._forget_owner(oldest)
            logger.info(
                "Evicted upstream session %s: the store is full (%d sessions)",
                oldest.fingerprint,
                self._max_sessions,
            )

        session = UpstreamSession(
            handle=secrets.token_urlsafe(32), owner=owner, last_used=self._clock()
        )
        self._by_handle[session.handle] = session
        if owner is not None:
            self._by_owner[owner] = session.handle
        logger.debug("Created upstream session %s", session.fingerprint)
        return session

    def for_owner(self, owner: str) -> UpstreamSession | None:
        """Return the owner's session, or None when it has none or it expired."""
        self._expire_idle()
        handle = self._by_owner.get(owner)
        return self._touch(handle) if handle is not None else None

    def for_handle(self, handle: str, owner: str | None) -> UpstreamSession:
        """Return the session with this handle, if `owner` may use it.

        Raises `SessionNotFoundError` when the handle is unknown, expired or
        was issued to another transport session.
        """
        self._expire_idle()
        session = self._by_handle.get(handle)
        if session is None or (session.owner is not None and session.owner != owner):
            raise SessionNotFoundError(
                "session_handle is unknown or has expired.",
                "Start a new sign-in with backstage-start-authentication-flow and use the "
                "session_handle it returns.",
            )
        return self._touch(handle)

    def _touch(self, handle: str) -> UpstreamSession:
        session = self._by_handle[handle]
        session.last_used = self._clock()
        self._by_handle.move_to_end(handle)
        return session

    def _expire_idle(self) -> None:
        deadline = self._clock() - self._idle_seconds
        while self._by_handle:
            oldest = next(iter(self._by_handle.values()))
            if oldest.last_used > deadline:
                return
            del self._by_handle[oldest.handle]
            self._forget_owner(oldest)
            logger.info(
                "Expired upstream session %s after %.0f s idle",
                oldest.fingerprint,
                self._idle_seconds,
            )

    def _forget_owner(self, session: UpstreamSession) -> None:
        if session.owner is not None and self._by_owner.get(session.owner) == session.handle:
            del self._by_owner[session.owner]
