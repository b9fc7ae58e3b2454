"""A pool deployment with one real model on the session's Ray cluster, for the gateway's Ray tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet_core.serving import PoolConfig, PoolSizing
from fleet_serving import ServingControl
from support.serving import BuiltModel, logistic_model

SUFFIX = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def pool(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, BuiltModel]]:
    """(Serve application name, the model it serves as version 1)."""
    directory = tmp_path_factory.mktemp("gateway-ray")
    built = logistic_model(directory, model=f"gw-iris-{SUFFIX}")
    control = ServingControl(deploy_timeout_s=120)
    control.connect(ray_cluster)
    app = f"test-gw-pool-{SUFFIX}"
    control.apply_pool(
        PoolConfig(models={built.spec.key: built.spec}),
        PoolSizing(min_replicas=1, max_replicas=1, num_cpus=0.25, max_models_per_replica=4),
        {"FLEET_HOME": str(directory / "replica-home")},
        app_name=app,
    )
    try:
        yield app, built
    finally:
        control.remove(app)
