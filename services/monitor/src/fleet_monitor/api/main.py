"""All monitor routers, gathered."""

from fastapi import APIRouter

from fleet_monitor.api import alerts, dashboard, lake, models, subjects

api_router = APIRouter()
for module in (models, alerts, lake, subjects, dashboard):
    api_router.include_router(module.router)
