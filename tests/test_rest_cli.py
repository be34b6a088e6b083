"""The command line's surface options, checked before anything binds a port."""

from __future__ import annotations

import pytest

from backstage_auth import cli
from backstage_auth.settings import Settings


@pytest.fixture
def no_serving(monkeypatch):
    """Fail the test instead of serving, so a check that lets a run through binds nothing."""

    def refuse(*args, **kwargs):
        raise AssertionError("main() tried to serve")

    monkeypatch.setattr(cli.anyio, "run", refuse)


def test_surface_both_serves_mcp_over_http():
    settings = Settings(surface="both", _env_file=None)

    assert settings.transport == "streamable-http"
    assert settings.serves_rest
    assert settings.serves_mcp_http
    assert (settings.rest_port, settings.port) == (8080, 9090)
    assert settings.host == "127.0.0.1"


def test_surface_rest_serves_no_mcp():
    settings = Settings(surface="rest", transport="streamable-http", _env_file=None)

    assert settings.serves_rest
    assert not settings.serves_mcp_http


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--surface", "both", "--transport", "stdio"], "out the stdio transport"),
        (["--surface", "both", "--port", "8080"], "different values (--port, --rest-port)"),
        (["--surface", "rest", "--rest-port", "0"], "rest_port"),
    ],
)
def test_contradicting_options_exit_2(no_serving, capsys, argv, message):
    exit_code = cli.main(argv)

    assert exit_code == 2
    assert message in capsys.readouterr().err


def test_exposure_check_covers_rest(no_serving, capsys):
    # The wildcard address is refused before anything binds, because no token is set.
    exit_code = cli.main(["--surface", "rest", "--host", "0.0.0.0"])

    assert exit_code == 2
    assert "refusing to listen on '0.0.0.0' without a bearer token" in capsys.readouterr().err


def test_help_documents_surface_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out

    assert "--surface {mcp,rest,both}" in text
    assert "--rest-port" in text
    assert "port of the REST adapter (default 8080)" in text
    assert "backstage-auth-mcp --surface both" in text
