"""All deployer routers, gathered."""

from fastapi import APIRouter

from fleet_deployer.api import deployments, rollouts, routes

api_router = APIRouter()
for module in (routes, deployments, rollouts):
    api_router.include_router(module.router)
