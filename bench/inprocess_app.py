"""Target (a): the model inside a plain FastAPI app under uvicorn, one worker — the limit.

Run as its own process (``python bench/inprocess_app.py --port P``) so the load generator never
shares its interpreter.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI
from workload import fleet_runtime, predict_rows, rows_from_body


def build_app() -> FastAPI:
    model = fleet_runtime()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        return {"predictions": predict_rows(model, rows_from_body(body))}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build_app(), host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False
    )
