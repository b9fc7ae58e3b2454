"""Image tags are content-addressed: ``deploy/docker/image-tag.sh`` gives the same tag for the same
build inputs, a new tag for any change to them, and refuses while they have uncommitted changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "docker" / "image-tag.sh"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)


def tag(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "deploy" / "docker" / "image-tag.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repository with the build inputs' layout and this checkout's script."""
    root = tmp_path / "repo"
    files = ("libs/core/x.py", "services/registry/y.py", "deploy/docker/registry.Dockerfile", "docs/z.md")
    for path in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(f"# {path}\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "uv.lock").write_text("version = 1\n")
    (root / ".dockerignore").write_text(".venv\n")
    shutil.copy(SCRIPT, root / "deploy" / "docker" / "image-tag.sh")
    git(root.parent, "init", "-q", str(root))
    commit_all(root, "initial")
    return root


def test_same_inputs_same_tag_and_any_input_change_a_new_one(repo: Path) -> None:
    first = tag(repo)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) == 12 and int(first.stdout, 16) >= 0
    assert tag(repo).stdout == first.stdout

    (repo / "docs" / "z.md").write_text("# not a build input\n")
    commit_all(repo, "docs only")
    assert tag(repo).stdout == first.stdout, "a commit that changes no build input keeps the tag"

    (repo / "uv.lock").write_text("version = 1\n# a bumped dependency\n")
    commit_all(repo, "bump")
    bumped = tag(repo).stdout
    assert bumped != first.stdout

    (repo / "uv.lock").write_text("version = 1\n")
    commit_all(repo, "revert")
    assert tag(repo).stdout == first.stdout, "the tag names the content, not the history"


def test_uncommitted_build_inputs_are_refused(repo: Path) -> None:
    (repo / "services" / "registry" / "y.py").write_text("# edited\n")
    result = tag(repo)
    assert result.returncode == 1
    assert "services/registry/y.py" in result.stderr
    assert result.stdout == ""
