"""The Prometheus alerting rules and scrape config are valid, their unit tests pass, and every
alert carries what Alertmanager routing and on-call need (``severity``, ``summary``, runbook)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.deploy import find_tool

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
PROMTOOL_TIMEOUT_S = 60


def promtool() -> str:
    return find_tool("promtool", "Debian/Ubuntu: apt-get install prometheus")


def run_promtool(*args: str) -> None:
    result = subprocess.run(
        [promtool(), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_alerting_rules_are_valid_promql() -> None:
    run_promtool("check", "rules", "alerts.yml")


def test_alerting_rules_pass_their_unit_tests() -> None:
    run_promtool("test", "rules", "alerts.test.yml")


def test_scrape_config_is_valid_and_loads_the_rules() -> None:
    run_promtool("check", "config", "prometheus.yml")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_summary_and_runbook(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in {"warning", "critical"}
    annotations = rule.get("annotations", {})
    assert annotations.get("summary")
    assert annotations.get("description")
    assert annotations.get("runbook_url", "").startswith("https://modelfleet.dev/docs/operations#")


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert {rule["alert"] for rule in alert_rules()} <= tested


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_runbook_link_lands_on_a_section_of_the_operations_runbook() -> None:
    runbook = (PROMETHEUS_DIR.parents[1] / "docs" / "operations.md").read_text()
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", runbook, re.MULTILINE)}
    linked = {rule["annotations"]["runbook_url"].split("#", 1)[1] for rule in alert_rules()}
    assert linked <= anchors, f"no section in docs/operations.md for: {sorted(linked - anchors)}"
