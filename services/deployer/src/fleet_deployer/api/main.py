"""All deployer routers, gathered."""

from fastapi import APIRouter

from fleet_deployer.api import deployments, pool, rollouts, routes

api_router = APIRouter()
for module in (routes, deployments, rollouts, pool):
    api_router.include_router(module.router)
