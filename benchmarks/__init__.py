"""Benchmarks of backstage-auth-mcp against the real Backstage test backend."""
