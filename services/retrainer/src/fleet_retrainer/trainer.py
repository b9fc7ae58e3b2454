"""Where training runs: a Ray task with the job's resource limits on the fleet's cluster, or a
worker thread of this process when no cluster is configured (tests, a laptop without Ray)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import pandas as pd

from fleet_core.schemas import Recipe
from fleet_core.service import keep_signal_handlers
from fleet_retrainer.training import train


class Trainer(Protocol):
    async def train(self, recipe: Recipe, X: pd.DataFrame, y: pd.Series) -> Any: ...


class LocalTrainer:
    """Trains in a worker thread (scikit-learn releases the GIL in its heavy parts)."""

    async def train(self, recipe: Recipe, X: pd.DataFrame, y: pd.Series) -> Any:
        return await asyncio.to_thread(train, recipe, X, y)


def _train_remote(recipe_json: str, X: pd.DataFrame, y: pd.Series) -> Any:
    from fleet_retrainer.training import train as train_here

    return train_here(Recipe.model_validate_json(recipe_json), X, y)


class RayTrainer:
    """Trains as a Ray task that reserves ``num_cpus`` and ``memory_mb`` on the cluster."""

    def __init__(self, address: str, *, num_cpus: float, memory_mb: int, timeout_s: float) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self._remote: Any = None

    def connect(self) -> None:
        import ray
        from ray._private import auto_init_hook

        auto_init_hook.enable_auto_connect = False  # never start a local cluster by accident
        ray.init(
            address=self.address,
            namespace="modelfleet-retrainer",
            log_to_driver=False,
            ignore_reinit_error=True,
        )
        self._remote = ray.remote(num_cpus=self.num_cpus, memory=self.memory_mb * 2**20, max_retries=0)(
            _train_remote
        )

    async def train(self, recipe: Recipe, X: pd.DataFrame, y: pd.Series) -> Any:
        if self._remote is None:
            # Ray installs its own SIGTERM handler on init; keep ours, so a stop leaves the
            # consumer group cleanly (as the deployer does).
            with keep_signal_handlers():
                await asyncio.to_thread(self.connect)
        ref = self._remote.remote(recipe.model_dump_json(), X, y)
        return await asyncio.wait_for(ref, self.timeout_s)
