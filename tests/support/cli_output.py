"""What a CLI command printed, when services running in the test's own process log to the same
stdout that ``CliRunner`` captures."""

from __future__ import annotations

import json
from typing import Any


def printed_json(output: str) -> Any:
    """The JSON document the command printed: from the first line that opens one (``{`` or
    ``[`` alone on its line, as ``--json`` prints), ignoring log lines around it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[") or line.startswith(('{"', "[{")))
    document, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]))
    return document
