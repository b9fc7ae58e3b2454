"""All monitor routers, gathered."""

from fastapi import APIRouter

from fleet_monitor.api import alerts, dashboard, lake, models

api_router = APIRouter()
for module in (models, alerts, lake, dashboard):
    api_router.include_router(module.router)
