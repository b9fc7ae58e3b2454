"""The embedded stack: the Tansu broker, a local Ray head and every service as child processes.

``fleet up`` starts them, creates the topics, waits for health, mints the admin token into the
CLI config and prints the URLs; ``--detach`` leaves them running and ``fleet down`` stops them.
State (pids, ports) lives in ``$FLEET_HOME/stack/state.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from fleet_core.auth import Role, TokenAuthority
from fleet_core.broker import ensure_topics
from fleet_sdk.config import ClientConfig, fleet_home
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port, port_open
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV, EmbeddedRay


@dataclass(frozen=True)
class ServiceSpec:
    """A service the stack runs: its module (``python -m``) and default port."""

    name: str
    module: str
    port: int


# In start order: the deployer reads the registry, the gateway reads the deployer's routes, the
# monitor reads what they all publish.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("registry", "fleet_registry", 8001),
    ServiceSpec("deployer", "fleet_deployer", 8002),
    ServiceSpec("gateway", "fleet_gateway", 8000),
    ServiceSpec("monitor", "fleet_monitor", 8003),
    ServiceSpec("retrainer", "fleet_retrainer", 8004),
)
DEFAULT_BROKER_PORT = 9092
DEFAULT_GRPC_PORT = 8081
"""The gateway's Open Inference Protocol gRPC port (``FLEET_GRPC_PORT``)."""


class StackError(RuntimeError):
    """The stack could not start, or is not running."""


@dataclass
class ComponentState:
    name: str
    pid: int
    port: int
    url: str
    log: str
    grpc_url: str | None = None
    """The gateway's gRPC endpoint (``grpc://host:port``); None for every other component."""


@dataclass
class StackState:
    home: str
    started_at: float
    broker: ComponentState
    services: list[ComponentState] = field(default_factory=list)
    ray: ComponentState | None = None
    env: dict[str, str] = field(default_factory=dict)
    """The stack's own FLEET_* settings given to every service (the JWT secret stays in its file)."""

    @property
    def components(self) -> list[ComponentState]:
        return [self.broker, *([self.ray] if self.ray else []), *self.services]

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(
            home=data["home"],
            started_at=data["started_at"],
            broker=ComponentState(**data["broker"]),
            services=[ComponentState(**s) for s in data["services"]],
            ray=ComponentState(**data["ray"]) if data.get("ray") else None,
            env=data.get("env", {}),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class Stack:
    """Start, inspect and stop the embedded stack rooted at ``home``."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or fleet_home()
        self.dir = self.home / "stack"
        self.state_path = self.dir / "state.json"
        self.logs = self.dir / "logs"

    # ------------------------------------------------------------------ secrets and state

    def jwt_secret(self) -> str:
        """The stack's signing key, created once (0600) and reused so tokens survive restarts."""
        path = self.dir / "jwt_secret"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def ray_temp_dir(self) -> Path:
        # Ray puts AF_UNIX sockets under its temp dir; those paths must stay short, so not $FLEET_HOME.
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:10]
        return Path("/tmp") / f"fleet-ray-{digest}"

    def state(self) -> StackState | None:
        return StackState.load(self.state_path)

    def running(self) -> StackState | None:
        state = self.state()
        if state and any(pid_alive(c.pid) for c in state.components):
            return state
        return None

    # ------------------------------------------------------------------ start

    def start(
        self,
        *,
        broker_port: int = DEFAULT_BROKER_PORT,
        ports: dict[str, int] | None = None,
        grpc_port: int | None = None,
        detach: bool = False,
        timeout_s: float = 180.0,
        env: dict[str, str] | None = None,
        log: Callable[[str], None] = print,
    ) -> StackState:
        if self.running():
            raise StackError(f"a stack is already running from {self.home} (`fleet status`, `fleet down`)")
        ports = {s.name: (ports or {}).get(s.name, s.port) for s in SERVICES}
        if grpc_port is None:  # the gateway's second port: free too when its HTTP port is left free
            grpc_port = 0 if ports["gateway"] == 0 else DEFAULT_GRPC_PORT
        broker_port = broker_port or free_port()
        ports = {name: port or free_port() for name, port in ports.items()}
        grpc_port = grpc_port or free_port()
        wanted = [("broker", broker_port), *ports.items(), ("gateway-grpc", grpc_port)]
        busy = [f"{n}:{p}" for n, p in wanted if port_open("127.0.0.1", p)]
        if busy:
            raise StackError(
                f"ports already in use: {', '.join(busy)} (pass other ports, or stop what uses them)"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        secret = self.jwt_secret()

        broker = EmbeddedBroker(broker_port, log_file=self.logs / "broker.log")
        broker.start(new_session=detach)
        assert broker.process is not None
        state = StackState(
            home=str(self.home),
            started_at=time.time(),
            broker=ComponentState(
                "broker",
                broker.process.pid,
                broker_port,
                f"kafka://{broker.bootstrap}",
                str(self.logs / "broker.log"),
            ),
        )
        state.save(self.state_path)
        try:
            created = asyncio.run(ensure_topics(broker.bootstrap))
            log(f"broker up on {broker.bootstrap}; {len(created)} topics created")
            ray = EmbeddedRay(log_path=self.logs / "ray.log", temp_dir=self.ray_temp_dir())
            ray.start()
            assert ray.process is not None
            state.ray = ComponentState(
                "ray", ray.process.pid, ray.port, f"ray://{ray.address}", str(self.logs / "ray.log")
            )
            state.save(self.state_path)
            log(f"ray head up on {ray.address}")
            state.env = {
                "FLEET_HOME": str(self.home),
                "FLEET_MODE": "embedded",
                "FLEET_KAFKA_BOOTSTRAP": broker.bootstrap,
                "FLEET_RAY_ADDRESS": ray.address,
                "FLEET_REGISTRY_URL": f"http://127.0.0.1:{ports['registry']}",
                "FLEET_DEPLOYER_URL": f"http://127.0.0.1:{ports['deployer']}",
                "FLEET_PUBLIC_URL": f"http://127.0.0.1:{ports['monitor']}",
                "FLEET_MONITOR_URL": f"http://127.0.0.1:{ports['monitor']}",
                **(env or {}),
            }
            for spec in SERVICES:
                state.services.append(
                    self._spawn(spec, ports[spec.name], state.env, detach, grpc_port=grpc_port)
                )
                state.save(self.state_path)
            for svc in state.services:
                self._wait_ready(svc, timeout_s)
                log(f"{svc.name} ready at {svc.url}")
        except BaseException:
            self.stop()
            raise
        token, _, _ = TokenAuthority(secret).issue("admin", Role.ADMIN, ["*"], ttl=None)
        by_name = {s.name: s.url for s in state.services}
        ClientConfig(
            registry_url=by_name["registry"],
            token=token,
            urls={f"{n}_url": u for n, u in by_name.items() if n != "registry"},
        ).save(self.home / "config")
        return state

    def _spawn(
        self,
        spec: ServiceSpec,
        port: int,
        stack_env: dict[str, str],
        detach: bool,
        *,
        grpc_port: int | None = None,
    ) -> ComponentState:
        grpc_url = f"grpc://127.0.0.1:{grpc_port}" if spec.name == "gateway" and grpc_port else None
        env = {
            **os.environ,
            **stack_env,
            "FLEET_JWT_SECRET": self.jwt_secret(),
            "FLEET_PORT": str(port),
            "FLEET_HOST": "127.0.0.1",
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "PYTHONUNBUFFERED": "1",
            **RAY_CLIENT_ENV,
            **({"FLEET_GRPC_PORT": str(grpc_port)} if grpc_url else {}),
        }
        log_path = self.logs / f"{spec.name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", spec.module, "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        return ComponentState(
            spec.name, proc.pid, port, f"http://127.0.0.1:{port}", str(log_path), grpc_url=grpc_url
        )

    def restart_service(self, name: str, timeout_s: float = 120.0) -> ComponentState:
        """Stop one service and start it again on the same port (its state lives in its database)."""
        state = self.running()
        if state is None:
            raise StackError("no stack is running")
        spec = next((s for s in SERVICES if s.name == name), None)
        old = next((c for c in state.services if c.name == name), None)
        if spec is None or old is None:
            raise StackError(f"unknown service {name!r}; one of {', '.join(s.name for s in SERVICES)}")
        terminate(old.pid, 15.0)
        grpc_port = int(old.grpc_url.rsplit(":", 1)[1]) if old.grpc_url else None
        new = self._spawn(spec, old.port, state.env, detach=True, grpc_port=grpc_port)
        state.services = [new if c.name == name else c for c in state.services]
        state.save(self.state_path)
        self._wait_ready(new, timeout_s)
        return new

    def _wait_ready(self, svc: ComponentState, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not pid_alive(svc.pid):
                raise StackError(f"{svc.name} exited during start; its log:\n{tail(Path(svc.log))}")
            try:
                r = httpx.get(f"{svc.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text[:300]
            except httpx.TransportError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise StackError(f"{svc.name} not ready after {timeout_s:.0f}s ({last}); log:\n{tail(Path(svc.log))}")

    # ------------------------------------------------------------------ stop and status

    def stop(self, timeout_s: float = 15.0) -> list[str]:
        """Stop every component (services first, then the broker); returns what was stopped."""
        state = self.state()
        if state is None:
            return []
        stopped = []
        for comp in reversed(state.services):
            if terminate(comp.pid, timeout_s):
                stopped.append(comp.name)
        if state.ray and pid_alive(state.ray.pid):
            # The Ray head runs in its own process group (GCS, raylet, replicas): stop all of it.
            terminate_group(state.ray.pid, 5.0)
            stopped.append("ray")
        if terminate(state.broker.pid, timeout_s):
            stopped.append("broker")
        self.state_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[dict[str, str]]:
        state = self.state()
        if state is None:
            return []
        rows = []
        for comp in state.components:
            alive = pid_alive(comp.pid)
            if comp.name in {"broker", "ray"}:
                healthy, detail = alive and port_open("127.0.0.1", comp.port), comp.url
            else:
                healthy, detail = False, "process not running"
                if alive:
                    try:
                        r = httpx.get(f"{comp.url}/readyz", timeout=2)
                        healthy = r.status_code == 200
                        checks = r.json().get("checks", {})
                        detail = (
                            "; ".join(f"{k}: {v.get('detail')}" for k, v in checks.items()) or r.text[:100]
                        )
                    except (httpx.TransportError, ValueError) as exc:
                        detail = f"no answer: {exc}"
            rows.append(
                {
                    "name": comp.name,
                    "pid": str(comp.pid),
                    "url": comp.url,
                    "state": "healthy" if healthy else ("running" if alive else "stopped"),
                    "detail": detail,
                }
            )
            if comp.grpc_url:
                listening = alive and port_open("127.0.0.1", int(comp.grpc_url.rsplit(":", 1)[1]))
                rows.append(
                    {
                        "name": f"{comp.name}-grpc",
                        "pid": str(comp.pid),
                        "url": comp.grpc_url,
                        "state": "healthy" if listening else ("running" if alive else "stopped"),
                        "detail": "Open Inference Protocol, inference.GRPCInferenceService",
                    }
                )
        return rows


def terminate_group(pid: int, timeout_s: float) -> None:
    """SIGTERM a process group, then SIGKILL it after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if not pid_alive(pid):
            return


def terminate(pid: int, timeout_s: float) -> bool:
    if not pid_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
