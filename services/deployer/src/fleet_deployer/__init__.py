"""ModelFleet deployer: deployments, rollouts and route tables over Ray Serve."""

__version__ = "0.1.0"
