"""All gateway routers, gathered."""

from fastapi import APIRouter

from fleet_gateway.api import feedback, health, inference, local, repository

api_router = APIRouter()
for module in (health, inference, feedback, repository, local):
    api_router.include_router(module.router)
