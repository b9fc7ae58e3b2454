"""Where the SDK and CLI find the stack: arguments, then ``FLEET_*`` environment variables,
then the config file ``$FLEET_HOME/config`` (default ``~/.fleet/config``) that ``fleet up`` writes."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_REGISTRY_URL = "http://127.0.0.1:8001"
DEFAULT_URLS = {
    "gateway_url": "http://127.0.0.1:8000",
    "deployer_url": "http://127.0.0.1:8002",
    "monitor_url": "http://127.0.0.1:8003",
    "retrainer_url": "http://127.0.0.1:8004",
}


def fleet_home() -> Path:
    return Path(os.environ.get("FLEET_HOME") or Path.home() / ".fleet")


def config_path() -> Path:
    return fleet_home() / "config"


@dataclass
class ClientConfig:
    registry_url: str = DEFAULT_REGISTRY_URL
    token: str | None = None
    urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> ClientConfig:
        path = path or config_path()
        data: dict[str, object] = {}
        if path.is_file():
            data = tomllib.loads(path.read_text()).get("default", {})
        cfg = cls(
            registry_url=str(data.get("registry_url") or DEFAULT_REGISTRY_URL),
            token=str(data["token"]) if data.get("token") else None,
            urls={k: str(v) for k, v in data.items() if k.endswith("_url")},
        )
        cfg.registry_url = os.environ.get("FLEET_REGISTRY_URL", cfg.registry_url)
        for key, default in DEFAULT_URLS.items():
            cfg.urls[key] = os.environ.get(f"FLEET_{key.upper()}") or cfg.urls.get(key) or default
        cfg.token = os.environ.get("FLEET_TOKEN", cfg.token or "") or None
        return cfg

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[default]"]
        urls = {**self.urls, "registry_url": self.registry_url}
        lines += [f'{k} = "{v}"' for k, v in sorted(urls.items())]
        if self.token:
            lines.append(f'token = "{self.token}"')
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path
