"""Finishing a sign-in inside the start call, for clients that support elicitation.

The server asks the user, through the client, to open the authorization URL
and paste back the URL the browser ended on, then runs the callback itself.
Clients without form elicitation, or without a channel for server-initiated
requests, get the plain start result and its next step instead.
"""

from __future__ import annotations

import logging

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

from backstage_auth.models import StartResult
from backstage_auth.names import ToolName
from backstage_auth.service import AuthService
from backstage_auth.sessions import UpstreamSession
from backstage_auth.validation import check_callback_url

logger = logging.getLogger(__name__)


class PastedCallback(BaseModel):
    callback_url: str = Field(
        description="The full address the browser shows after signing in (…/handler/frame?code=…)."
    )


def supports_form_elicitation(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    return bool(capabilities and capabilities.elicitation and capabilities.elicitation.form)


async def finish_with_elicitation(
    ctx: Context, service: AuthService, session: UpstreamSession, started: StartResult
) -> StartResult:
    """Ask the user for the callback URL and complete the sign-in when they paste it.

    Returns `started` unchanged when the client cannot elicit or the user
    declines. Raises `BackstageAuthError` when Backstage rejects the pasted URL.
    """
    # TODO: clients of the sessionless 2026-07-28 protocol have no channel for
    # server-initiated requests, so they always get the plain result; asking them would
    # need the multi-round InputRequiredResult exchange, which re-runs start on each round.
    if not supports_form_elicitation(ctx):
        return started

    message = (
        f"Sign in to Backstage with {started.provider}: open {started.authorization_url} in "
        "your browser. When the sign-in finishes, copy the whole address from the browser's "
        "address bar and paste it here."
    )
    try:
        answer = await ctx.elicit(message, PastedCallback)
    except MCPError as exc:
        logger.info("Elicitation unavailable (%s); returning the authorization URL", exc)
        return started

    if answer.action != "accept":
        logger.info("The user chose %r for the sign-in elicitation", answer.action)
        return started.model_copy(
            update={"next_step": f"The user did not paste the callback URL. {started.next_step}"}
        )

    try:
        callback_url = check_callback_url(answer.data.callback_url.strip())
    except ValueError as exc:
        return started.model_copy(
            update={"next_step": f"The pasted URL is not usable: {exc}. {started.next_step}"}
        )

    signed_in = await service.callback(
        session, provider=started.provider, code=None, state=None, callback_url=callback_url
    )
    return started.model_copy(
        update={
            "completed_sign_in": signed_in,
            "next_step": (
                f"The user pasted the callback URL and the sign-in is complete; see "
                f"completed_sign_in. {signed_in.next_step} There is no need to call "
                f"{ToolName.CALLBACK}."
            ),
        }
    )
