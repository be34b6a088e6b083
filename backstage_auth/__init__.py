"""MCP server that signs AI agents in to Backstage through its auth API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backstage-auth-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
