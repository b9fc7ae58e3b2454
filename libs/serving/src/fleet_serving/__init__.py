"""ModelFleet serving engine: model runtimes and the Ray Serve deployments that host them."""
