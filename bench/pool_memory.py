"""What a loaded model costs a pool replica: the bytes the replica charges each model (its memory
budget's unit) and what the replica's RSS really grew by, per kind of small model.

Starts a local Ray head and one pool replica (1536 MB reserved, budget derived
from the replica's empty RSS), loads ``--lr`` logistic regressions, ``--rf`` random forests of a
few MB and ``--onnx`` ONNX forests one after another through a handle, and prints per kind: mean
artifact size, mean bytes charged, and RSS growth per model. The last line is the figure the fleet
benchmark checks: pool RSS growth per loaded small model (target <= 2 MB; KServe MMS ~6.3 MB).

Usage: ``.venv/bin/python bench/pool_memory.py [--lr 100] [--rf 10] [--onnx 5] [--quick] [--out F]``
(``--quick``: 10 / 2 / 1 models, a smoke run). Writes ``bench/results/pool-memory[-quick]-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Under `uv run` (the Makefile) Ray's uv hook would ship the cwd to every worker as a runtime env and
# run them with `uv run` (from bench/ it refuses outright: pyproject.toml is not in the working_dir);
# the bench's Ray heads already run this venv, so drivers here and in children only attach.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import skops.io as sio  # noqa: E402

from fleet_core.serving import POOL_DEPLOYMENT, ModelSpec, Placement, PoolConfig, PoolSizing  # noqa: E402
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV, EmbeddedRay  # noqa: E402
from fleet_sdk.sklearn import infer_signature  # noqa: E402
from fleet_serving import ServingControl  # noqa: E402
from support.serving import make_spec, numeric_frame  # noqa: E402

MB = 2**20


def build(directory: Path, kind: str, i: int) -> tuple[ModelSpec, list[dict[str, Any]]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame, y = numeric_frame(n=4000 if kind != "lr" else 200, seed=i)
    rows = [{k: float(v) for k, v in r.items()} for r in frame.head(3).to_dict("records")]
    if kind == "lr":
        est = LogisticRegression().fit(frame, y)
        return make_spec(directory, f"lr{i}", "sklearn", sio.dumps(est), infer_signature(frame, est)), rows
    est = RandomForestClassifier(n_estimators=50 if kind == "rf" else 20, random_state=i).fit(frame, y)
    if kind == "rf":
        return make_spec(directory, f"rf{i}", "sklearn", sio.dumps(est), infer_signature(frame, est)), rows
    from skl2onnx import to_onnx

    onx = to_onnx(est, frame.to_numpy(dtype=np.float32)[:1], options={"zipmap": False})
    return make_spec(
        directory, f"onnx{i}", "onnx", onx.SerializeToString(), infer_signature(frame, est)
    ), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=int, default=100)
    parser.add_argument("--rf", type=int, default=10)
    parser.add_argument("--onnx", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10 / 2 / 1 models: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.lr, args.rf, args.onnx = min(args.lr, 10), min(args.rf, 2), min(args.onnx, 1)
    kinds = {"lr": args.lr, "rf": args.rf, "onnx": args.onnx}
    os.environ.update(RAY_CLIENT_ENV)
    with tempfile.TemporaryDirectory(prefix="fleet-pool-memory-") as tmp:
        directory = Path(tmp)
        built = {k: [build(directory, k, i) for i in range(n)] for k, n in kinds.items()}
        head = EmbeddedRay(log_path=directory / "ray.log")
        head.start()
        try:
            control = ServingControl(deploy_timeout_s=300)
            control.connect(head.address)
            specs = [s for models in built.values() for s, _ in models]
            sizing = PoolSizing(min_replicas=1, max_replicas=1, num_cpus=0.5, memory_mb=1536)
            control.apply_pool(
                PoolConfig(models={s.key: s for s in specs}, idle_unload_s=3600),
                sizing,
                {"FLEET_HOME": str(directory / "home")},
                app_name="bench-pool-memory",
            )
            handle = control.handle(
                Placement(kind="pool", app="bench-pool-memory", deployment=POOL_DEPLOYMENT)
            )
            (empty,) = control.pool_stats("bench-pool-memory")
            assert empty.baseline_rss_bytes is not None and empty.rss_bytes is not None
            print(
                f"empty replica: RSS {empty.rss_bytes / MB:.1f} MB "
                f"(baseline {empty.baseline_rss_bytes / MB:.1f} MB), "
                f"reserved {sizing.memory_mb} MB, model budget {(empty.budget_bytes or 0) / MB:.1f} MB"
            )
            results: dict[str, Any] = {"baseline_rss_mb": empty.baseline_rss_bytes / MB, "kinds": {}}
            rss = empty.rss_bytes
            for kind, models in built.items():
                if not models:
                    continue
                for spec, rows in models:
                    handle.options(multiplexed_model_id=spec.key).predict.remote(rows).result(timeout_s=120)
                (stats,) = control.pool_stats("bench-pool-memory")
                assert stats.rss_bytes is not None
                charged = {m.key: m.bytes for m in stats.loaded}
                n = len(models)
                figures = {
                    "models": n,
                    "artifact_mb": sum(s.size_bytes for s, _ in models) / n / MB,
                    "charged_mb": sum(charged[s.key] for s, _ in models) / n / MB,
                    "rss_growth_mb": (stats.rss_bytes - rss) / n / MB,
                }
                rss = stats.rss_bytes
                results["kinds"][kind] = figures
                print(
                    f"{kind:>5}: {n} models, artifact {figures['artifact_mb']:.3f} MB, charged "
                    f"{figures['charged_mb']:.3f} MB, RSS growth {figures['rss_growth_mb']:.3f} MB per model"
                )
            (final,) = control.pool_stats("bench-pool-memory")
            assert final.rss_bytes is not None
            total = sum(kinds.values())
            per_model = (final.rss_bytes - empty.rss_bytes) / total / MB
            results |= {
                "loaded": len(final.loaded),
                "evictions_by_bytes": final.evictions_by_bytes,
                "loaded_mb": final.loaded_bytes / MB,
                "rss_growth_per_model_mb": per_model,
            }
            print(
                f"{len(final.loaded)} loaded, {final.loaded_bytes / MB:.1f} MB charged of "
                f"{(final.budget_bytes or 0) / MB:.1f} MB, {final.evictions_by_bytes} evictions by bytes"
            )
            print(
                f"pool RSS growth per loaded small model: {per_model:.2f} MB "
                "(target <= 2 MB; KServe MMS ~6.3 MB)"
            )
            control.remove("bench-pool-memory")
            kind_name = "pool-memory-quick" if args.quick else "pool-memory"
            out = args.out or ROOT / "bench" / "results" / f"{kind_name}-{dt.date.today().isoformat()}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            head.stop()


if __name__ == "__main__":
    main()
