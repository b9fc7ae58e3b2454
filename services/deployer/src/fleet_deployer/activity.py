"""Last-request times per version, kept in memory and flushed to the database in batches.

``inference.logged`` arrives for every served request, so recording one must cost a dict write.
"""

from __future__ import annotations

from datetime import datetime


class ActivityTracker:
    """The newest request time seen per (model, version) since the last flush."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], datetime] = {}

    def touch(self, model: str, version: int, at: datetime) -> None:
        key = (model, version)
        previous = self._pending.get(key)
        if previous is None or at > previous:
            self._pending[key] = at

    def pending(self) -> dict[tuple[str, int], datetime]:
        return dict(self._pending)

    def drain(self) -> dict[tuple[str, int], datetime]:
        """Hand over what accumulated; the caller writes it (and ``restore``s it if that fails)."""
        batch, self._pending = self._pending, {}
        return batch

    def restore(self, batch: dict[tuple[str, int], datetime]) -> None:
        for (model, version), at in batch.items():
            self.touch(model, version, at)
