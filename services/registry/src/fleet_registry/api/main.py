"""All registry routers, gathered."""

from fastapi import APIRouter

from fleet_registry.api import admin, datasets, models, versions, webhooks

api_router = APIRouter()
for module in (models, versions, datasets, admin, webhooks):
    api_router.include_router(module.router)
