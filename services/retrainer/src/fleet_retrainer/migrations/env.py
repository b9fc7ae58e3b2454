"""Alembic environment of the retrainer; the shared body lives in fleet_core.db."""

from fleet_core.db import run_alembic_env
from fleet_retrainer.models import Base

run_alembic_env(Base.metadata)
