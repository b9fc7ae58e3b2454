"""The retrainer in-process over an in-memory registry and lake (``support.retrainer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.retrainer import RetrainerHarness, running_retrainer


@pytest.fixture
async def retrainer(tmp_path: Path) -> AsyncIterator[RetrainerHarness]:
    async with running_retrainer(tmp_path) as h:
        yield h
