"""All registry routers, gathered."""

from fastapi import APIRouter

from fleet_registry.api import admin, datasets, models, versions

api_router = APIRouter()
for module in (models, versions, datasets, admin):
    api_router.include_router(module.router)
