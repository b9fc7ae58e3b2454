"""``fleet demo`` / ``make demo``: the platform doing its job on this box, narrated."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

from fleet_sdk.client import Client
from fleet_sdk.stack import Stack, pid_alive


def _models() -> list[dict[str, Any]]:
    """Three models trained on datasets bundled with scikit-learn (no download)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    specs = []
    for name, loader, estimator, description in [
        (
            "iris-species",
            load_iris,
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            "Iris species from sepal and petal measurements",
        ),
        (
            "breast-cancer",
            load_breast_cancer,
            RandomForestClassifier(n_estimators=100, random_state=0),
            "Malignant vs benign tumours from cell nuclei features",
        ),
        (
            "diabetes-progression",
            load_diabetes,
            GradientBoostingRegressor(random_state=0),
            "Disease progression one year after baseline",
        ),
    ]:
        X, y = loader(return_X_y=True, as_frame=True)
        X.columns = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in X.columns]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
        specs.append(
            {
                "name": name,
                "estimator": estimator.fit(X_train, y_train),
                "X_train": X_train,
                "y_train": y_train,
                "X_test": X_test,
                "y_test": y_test,
                "description": description,
            }
        )
    return specs


def run_demo(console: Console, *, keep_running: bool = True) -> None:
    stack = Stack()
    owned = stack.running() is None
    if owned:
        console.rule("[bold]1. Starting the embedded stack")
        stack.start(log=lambda m: console.print(f"  [dim]{m}[/]"), env=DEMO_PACE)
    else:
        console.rule("[bold]1. Using the stack that is already running")
    try:
        _story(console)
        if keep_running and owned:
            state = stack.state()
            console.rule("[bold]The stack is up")
            console.print(
                "In another shell:  [bold]uv run fleet monitor overview[/]   ·   "
                f"API docs: {state.services[0].url}/docs"
                if state
                else ""
            )
            console.print(f"Ops dashboard: [bold]{Client().monitor_url}/[/]")
            console.print("Press [bold]Ctrl-C[/] to stop.")
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            pids = [c.pid for c in state.components] if state else []
            while not stop.wait(1.0):
                if any(not pid_alive(p) for p in pids):
                    console.print("[red]a component exited; stopping[/]")
                    break
    finally:
        if owned:
            console.print("stopping the stack…")
            stack.stop()


def _story(console: Console) -> None:
    from fleet_sdk.cli import _print_lineage, _table, _versions_table

    client = Client()
    console.rule("[bold]2. Training three models on scikit-learn's bundled datasets")
    with console.status("training…"):
        specs = _models()
    console.rule("[bold]3. Registering them: signature, reference profile, metrics, recipe, training data")
    registered = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console
    ) as progress:
        for spec in specs:
            task = progress.add_task(f"{spec['name']}", total=None)
            version = client.register_sklearn(
                spec["name"],
                spec["estimator"],
                spec["X_train"],
                spec["y_train"],
                X_test=spec["X_test"],
                y_test=spec["y_test"],
                team="demo",
                description=spec["description"],
                aliases=["champion"],
                tags=["demo"],
                deploy_policy="direct",
                progress=lambda done, total, t=task: progress.update(t, completed=done, total=total),
            )
            registered.append(version)
    console.rule("[bold]4. The registry now holds")
    for v in registered:
        _versions_table(v["model"], client.list_versions(v["model"])[:3])
        _print_lineage(client.lineage(v["model"], v["version"]))
    console.rule("[bold]5. Audit trail (latest writes)")
    entries = client.audit(limit=8)
    _table(
        "Audit log",
        ["actor", "action", "resource"],
        [[e["actor"], e["action"], e["resource"]] for e in entries],
    )
    _serve_traffic(console, client, specs)
    _shift_and_watch(console, client, specs[0])
    _close_the_loop(console, client)
    models = client.list_models()
    _table(
        f"Models ({len(models)})",
        ["name", "team", "latest", "aliases", "description"],
        [
            [
                m["name"],
                m["team"],
                m["latest_version"],
                ", ".join(f"{a}→v{n}" for a, n in m["aliases"].items()),
                m["description"],
            ]
            for m in models
        ],
    )


def _wait_until_served(client: Client, name: str, row: dict[str, Any], timeout_s: float = 180.0) -> None:
    """Registration with ``deploy_policy="direct"`` deploys with no further action; wait for it."""
    from fleet_sdk.errors import FleetAPIError, FleetUnavailable

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.predict(name, row)
            return
        except (FleetAPIError, FleetUnavailable) as exc:
            last = exc
            time.sleep(1.0)
    raise RuntimeError(f"{name} was not served within {timeout_s:.0f}s: {last}")


def _serve_traffic(
    console: Console, client: Client, specs: list[dict[str, Any]], per_model: int = 150
) -> None:
    from fleet_sdk.cli import _table

    console.rule("[bold]6. Serving: registered with deploy policy `direct`, so the deployer put them live")
    with console.status("waiting for the deployer and Ray Serve to load the models…"):
        for spec in specs:
            _wait_until_served(client, spec["name"], _rows(spec["X_test"].head(1))[0])
    deployments = client.deployments()
    _table(
        "Deployments",
        ["model", "version", "placement", "state", "traffic %"],
        [
            [
                d.get("model"),
                d.get("version"),
                (d.get("placement") or {}).get("kind"),
                d.get("state"),
                d.get("traffic_weight"),
            ]
            for d in deployments
        ],
    )
    console.rule(
        f"[bold]7. A burst of real traffic through the gateway ({per_model} requests per model, 8 at a time)"
    )
    answers = []
    for spec in specs:
        answer = client.predict(spec["name"], _rows(spec["X_test"].head(5)))
        truth = [_native(v) for v in spec["y_test"].head(5)]
        answers.append(
            [
                spec["name"],
                f"v{answer['version']}",
                "  ".join(_fmt(p) for p in answer["predictions"]),
                "  ".join(_fmt(t) for t in truth),
            ]
        )
    _table(
        "Predictions for the first five test rows", ["model", "served by", "predictions", "truth"], answers
    )
    stats = []
    for spec in specs:
        rows = _rows(spec["X_test"])
        latencies, errors = _burst(client, spec["name"], rows, per_model)
        latencies.sort()
        stats.append(
            [
                spec["name"],
                len(latencies),
                errors,
                f"{latencies[len(latencies) // 2]:.1f}" if latencies else "-",
                f"{latencies[int(len(latencies) * 0.95) - 1]:.1f}" if latencies else "-",
                f"{latencies[-1]:.1f}" if latencies else "-",
            ]
        )
    _table("Per-model latency seen by the client (ms)", ["model", "ok", "errors", "p50", "p95", "max"], stats)


DRIFT_WINDOW_ROWS = 100
DEMO_PACE = {"FLEET_CANARY_STEP_INTERVAL_S": "15", "FLEET_ANALYSIS_INTERVAL_S": "3"}
"""A stack the demo starts itself moves a canary on every 15 s rather than every minute."""
LOOP_MODEL = "credit-risk"
LOOP_TIMEOUT_S = 420.0


def _credit_population(n: int, rng: Any, *, shifted: bool) -> Any:
    """Loan applications: before, the approval rule follows income + savings; after the shift,
    applicants are wealthier and the rule has changed (income - savings). Labels are the truth."""
    import pandas as pd

    centre = 3.0 if shifted else 0.0
    frame = pd.DataFrame(rng.normal(centre, 1.0, size=(n, 2)), columns=["income", "savings"])
    rule = frame["income"] - frame["savings"] if shifted else frame["income"] + frame["savings"]
    frame["approved"] = (rule > 0).astype(int)
    return frame


def _close_the_loop(console: Console, client: Client) -> None:
    """A model meets a world it was not trained for; labels arrive; the fleet notices, retrains,
    canaries the new version and promotes it, with no one touching it."""
    import numpy as np
    from rich.live import Live
    from rich.table import Table
    from sklearn.ensemble import RandomForestClassifier

    from fleet_sdk.cli import _table
    from fleet_sdk.errors import FleetAPIError, FleetUnavailable

    console.rule(f"[bold]9. Closing the loop: {LOOP_MODEL} meets new applicants, and the fleet retrains it")
    rng = np.random.default_rng(7)
    before = _credit_population(600, rng, shifted=False)
    test = _credit_population(200, rng, shifted=False)
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(
        before[["income", "savings"]], before["approved"]
    )
    client.register_sklearn(
        LOOP_MODEL,
        model,
        before[["income", "savings"]],
        before["approved"],
        X_test=test[["income", "savings"]],
        y_test=test["approved"],
        team="demo",
        target_name="approved",
        deploy_policy="direct",
        description="Loan approval (synthetic)",
    )
    _wait_until_served(client, LOOP_MODEL, {"income": 0.1, "savings": -0.2})
    client.monitor_config(LOOP_MODEL, drift_window_rows=200, analysis_min_requests=20)
    console.print(
        f"  v1 trained on {len(before)} applications and serving; "
        "now the applicants change, and their outcomes (labels) arrive"
    )

    sent = failed = 0
    phase = "sending traffic"
    promoted = None
    deadline = time.monotonic() + LOOP_TIMEOUT_S

    def status() -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_row("requests (10 applications each)", f"{sent}", "failed", f"{failed}")
        grid.add_row("now", phase)
        return grid

    with Live(status(), console=console, refresh_per_second=4) as live:
        while promoted is None and time.monotonic() < deadline:
            batch = _credit_population(10, rng, shifted=True)
            try:
                answer = client.predict(LOOP_MODEL, batch[["income", "savings"]].to_dict("records"))
                client.feedback(
                    answer["request_id"],
                    LOOP_MODEL,
                    [int(v) for v in batch["approved"]],
                    receipt=answer.get("receipt"),
                )
            except (FleetAPIError, FleetUnavailable):
                failed += 1
            sent += 1
            if sent % 25 == 0:
                phase = _loop_phase(client)
                promoted = next(
                    (r for r in client.rollouts(LOOP_MODEL) if r["version"] > 1 and r["phase"] == "promoted"),
                    None,
                )
            live.update(status())
    if promoted is None:
        console.print(
            f"  [yellow]not promoted within {LOOP_TIMEOUT_S:.0f} s; "
            "see `fleet jobs list` and `fleet rollout list`[/]"
        )
        return
    version = client.get_version(LOOP_MODEL, promoted["version"])
    job = next(j for j in client.jobs(LOOP_MODEL) if j["new_version"] == promoted["version"])
    result = job["result"]
    console.print(f"  [green]v{promoted['version']} promoted[/] after {sent} requests, {failed} failed")
    _table(
        f"Retraining job {job['id'][:8]} ({job['trigger']})",
        ["step"],
        [[line.split(" ", 1)[1]] for line in client.job_logs(job["id"])],
    )
    _table(
        f"{LOOP_MODEL} v{promoted['version']}: lineage",
        ["", ""],
        [
            ["origin", version["origin"]],
            ["parent", f"v{version['parent_version']}"],
            ["dataset", f"{version['dataset_version']['dataset']} v{version['dataset_version']['version']}"],
            ["triggered by", f"drift.detected {version['trigger_event_id']}"],
            [
                "holdout accuracy",
                f"v1 {result['champion_metrics']['accuracy']:.3f} → v{promoted['version']} "
                f"{result['candidate_metrics']['accuracy']:.3f}",
            ],
        ],
    )


def _loop_phase(client: Client) -> str:
    """One line for where the loop is: drift, the retraining job, or the canary."""
    rollouts = [r for r in client.rollouts(LOOP_MODEL) if r["version"] > 1]
    if rollouts:
        r = rollouts[0]
        return f"canary of v{r['version']}: {r['phase']} at {r['step']} % — {r.get('reason') or ''}"[:160]
    jobs = client.jobs(LOOP_MODEL)
    if jobs:
        return f"retraining job {jobs[0]['id'][:8]}: {jobs[0]['state']}"
    drifting = [a for a in client.alerts(state="firing", model=LOOP_MODEL, kind="drift")]
    if drifting:
        return f"drift detected: {drifting[0]['summary']}"[:160]
    return "sending traffic; the monitor fills its first drift window"


def _shift_and_watch(console: Console, client: Client, spec: dict[str, Any], timeout_s: float = 60.0) -> None:
    """Send one model traffic whose inputs moved away from its training data; the monitor names the
    features that moved and raises an alert, and the dashboard shows it."""
    from fleet_sdk.cli import _table

    name = spec["name"]
    console.rule(f"[bold]8. Monitoring: {name}'s inputs shift away from its training data")
    console.print(f"  Ops dashboard (live): [bold]{client.monitor_url}/#/models/{name}[/]")
    client.monitor_config(name, drift_window_rows=DRIFT_WINDOW_ROWS, drift_min_rows=50)
    console.print(f"  drift windows for {name} set to {DRIFT_WINDOW_ROWS} rows (`fleet monitor config`)")
    rows = _rows(spec["X_test"])
    moved = [c for c in rows[0] if "petal" in c] or list(rows[0])[:2]
    spans = {c: float(spec["X_train"][c].std()) for c in moved}
    shifted = [{**r, **{c: round(r[c] + 2 * spans[c], 3) for c in moved}} for r in rows]
    _, errors = _burst(client, name, shifted, 2 * DRIFT_WINDOW_ROWS)
    console.print(
        f"  sent {2 * DRIFT_WINDOW_ROWS} requests with {', '.join(moved)} moved by two standard deviations"
    )
    deadline = time.monotonic() + timeout_s
    firing: list[dict[str, Any]] = []
    with console.status("waiting for the monitor to close a drift window…"):
        while time.monotonic() < deadline and not firing:
            firing = [a for a in client.alerts(state="firing", model=name, kind="drift")]
            time.sleep(1.0)
    if not firing:
        console.print(
            f"  [yellow]no drift alert within {timeout_s:.0f} s; see `fleet monitor show {name}`[/]"
        )
        return
    for alert in firing:
        console.print(f"  [red]alert[/] {alert['severity']}: {alert['summary']}")
    health = client.model_health(name)
    data = next((d for d in health["drift"] if d["kind"] == "data"), None)
    if data:
        _table(
            f"{name} v{data['version']}: data drift per feature (last window, {data['sample_size']} rows)",
            ["feature", "test", "statistic", "p-value", "drifted"],
            [
                [
                    s["feature"],
                    s["test"],
                    f"{s['statistic']:.3f}",
                    "-" if s.get("p_value") is None else f"{s['p_value']:.2g}",
                    "[red]yes[/]" if s["drifted"] else "no",
                ]
                for s in data["scores"]
            ],
        )
    if errors:
        console.print(f"  [yellow]{errors} shifted requests failed[/]")


def _burst(client: Client, name: str, rows: list[dict[str, Any]], n: int) -> tuple[list[float], int]:
    from concurrent.futures import ThreadPoolExecutor

    from fleet_sdk.errors import FleetAPIError, FleetUnavailable

    def one(i: int) -> float | None:
        start = time.perf_counter()
        try:
            client.predict(name, rows[i % len(rows)])
        except (FleetAPIError, FleetUnavailable):
            return None
        return (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(n)))
    ok = [r for r in results if r is not None]
    return ok, len(results) - len(ok)


def _rows(frame: Any) -> list[dict[str, Any]]:
    return [{str(k): _native(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
