"""HTTP API of the registry (thin routers over the store)."""
