"""``fleet demo`` / ``make demo``: the platform doing its job on this box, narrated."""

from __future__ import annotations

import signal
import threading
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
        stack.start(log=lambda m: console.print(f"  [dim]{m}[/]"))
    else:
        console.rule("[bold]1. Using the stack that is already running")
    try:
        _story(console)
        if keep_running and owned:
            state = stack.state()
            console.rule("[bold]The stack is up")
            console.print(
                "In another shell:  [bold]uv run fleet models list[/]   ·   "
                f"API docs: {state.services[0].url}/docs"
                if state
                else ""
            )
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
