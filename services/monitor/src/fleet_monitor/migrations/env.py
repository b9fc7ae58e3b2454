"""Alembic environment of the monitor; the shared body lives in fleet_core.db."""

from fleet_core.db import run_alembic_env
from fleet_monitor.models import Base

run_alembic_env(Base.metadata)
