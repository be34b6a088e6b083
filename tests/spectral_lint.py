"""Install and run Spectral, the OpenAPI linter, from the Node project in ``tests/spectral``.

The project pins ``@stoplight/spectral-cli`` in its ``package-lock.json``; its
``.npmrc`` switches install scripts off, which Spectral does not need. Lint
with the ``spectral:oas`` ruleset through ``tests/spectral/.spectral.yaml``:

    findings = lint_openapi(Path("openapi.json"))
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SPECTRAL_DIR = Path(__file__).resolve().parent / "spectral"
RULESET = SPECTRAL_DIR / ".spectral.yaml"
SPECTRAL_BIN = SPECTRAL_DIR / "node_modules" / ".bin" / "spectral"
LINT_TIMEOUT_SECONDS = 120


class SpectralSetupError(RuntimeError):
    """npm is missing or ``npm ci`` failed in ``tests/spectral``."""


def ensure_installed() -> None:
    """Run ``npm ci`` in ``tests/spectral`` unless its install is up to date.

    The install counts as up to date when ``node_modules/.package-lock.json``,
    which npm writes at the end of an install, is not older than
    ``package-lock.json``. A file lock serialises concurrent callers.
    """
    if shutil.which("npm") is None:
        raise SpectralSetupError("npm not found on PATH: Spectral needs Node.js with npm")

    lock_path = Path(tempfile.gettempdir()) / (
        "spectral-" + hashlib.sha256(bytes(SPECTRAL_DIR)).hexdigest()[:16] + ".lock"
    )
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        marker = SPECTRAL_DIR / "node_modules" / ".package-lock.json"
        lockfile = SPECTRAL_DIR / "package-lock.json"
        if marker.exists() and marker.stat().st_mtime >= lockfile.stat().st_mtime:
            return
        print(f"spectral: running npm ci in {SPECTRAL_DIR}", file=sys.stderr, flush=True)
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SPECTRAL_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SpectralSetupError(
                f"npm ci failed with exit code {result.returncode} in {SPECTRAL_DIR}:\n"
                + (result.stdout + result.stderr)[-4000:]
            )


def lint_openapi(document: Path) -> list[dict[str, Any]]:
    """Lint an OpenAPI document and return Spectral's findings (severity 0 is an error).

    Raises RuntimeError when Spectral itself fails, such as on a ruleset error.
    """
    ensure_installed()
    result = subprocess.run(
        [
            str(SPECTRAL_BIN),
            "lint",
            "--ruleset",
            str(RULESET),
            "--format",
            "json",
            "--quiet",
            "--fail-on-unmatched-globs",
            str(document),
        ],
        cwd=SPECTRAL_DIR,
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_SECONDS,
        check=False,
    )
    # Spectral exits 1 when it finds errors and 2 when it cannot lint at all.
    if result.returncode not in (0, 1):
        raise RuntimeError(
            f"Spectral failed with exit code {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return json.loads(result.stdout)
