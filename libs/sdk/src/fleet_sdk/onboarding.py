"""Bulk onboarding: model files described by manifests (YAML, JSON or TOML), registered concurrently
and idempotently, each entry succeeding or failing on its own.

A manifest describes one model (a mapping with ``name``) or many (``models:``, a list of such
mappings, with optional ``defaults:`` applied to each). Artifact paths are relative to the
manifest. A directory is read as every manifest file below it. The format is in
``docs/onboarding.md``.

The registry makes re-runs safe: bytes a model already holds are answered with the version that
holds them (ADR 0024), so a manifest registered twice registers nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet_core.schemas import DeployPolicy, FieldSpec, Flavor, ResourceQuota, Signature, Task
from fleet_core.validation import validate_rows
from fleet_sdk.errors import FleetAPIError, FleetUnavailable

if TYPE_CHECKING:
    from fleet_sdk.client import Client

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
FLAVOR_BY_SUFFIX: dict[str, Flavor] = {".skops": "sklearn", ".onnx": "onnx", ".zip": "python"}
DEFAULT_CONCURRENCY = 8

Status = Literal["registered", "unchanged", "failed", "valid"]


class ManifestEntry(BaseModel):
    """One model version to register, as a manifest states it. Unknown fields are refused by name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$", description="The model's name")
    team: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$", description="Team of a new model")
    artifact: Path = Field(description="The model file, relative to the manifest")
    flavor: Flavor | None = Field(default=None, description="Default: from the file's extension")
    task: Task | None = None
    signature: Signature | None = Field(default=None, description="Default: inferred from example_input")
    example_input: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=100)
    metrics: dict[str, float] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=50)
    description: str | None = None
    deploy_policy: DeployPolicy = "none"
    quota: ResourceQuota | None = None
    image: str | None = None
    aliases: list[str] = Field(default_factory=list, max_length=10)
    version: int | None = Field(default=None, ge=1, description="Explicit version number")


@dataclass
class PlannedEntry:
    """A manifest entry where it was found: parsed, or the reason it could not be."""

    source: str
    name: str
    entry: ManifestEntry | None = None
    error: str | None = None


@dataclass
class EntryResult:
    """What happened to one entry."""

    name: str
    status: Status
    source: str
    team: str | None = None
    version: int | None = None
    sha256: str | None = None
    reason: str | None = None


@dataclass
class OnboardingReport:
    results: list[EntryResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[EntryResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": [asdict(r) for r in self.results],
            **{s: self.count(s) for s in ("registered", "unchanged", "failed", "valid")},
        }


class OnboardingError(Exception):
    """An entry that cannot be registered; the message is its reason."""


# ---------------------------------------------------------------------------------- reading


def read_document(path: Path) -> Any:
    """A manifest file's content: YAML (.yaml, .yml), JSON or TOML, by its extension."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return tomllib.loads(text)
    return yaml.safe_load(text)


def _problem(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _sibling_artifact(manifest: Path) -> Path | None:
    """``churn.skops`` next to ``churn.yaml``: the artifact a one-model manifest need not name."""
    for suffix in FLAVOR_BY_SUFFIX:
        candidate = manifest.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def parse_entry(
    raw: Any, *, base: Path, source: str, defaults: Mapping[str, Any] | None = None
) -> PlannedEntry:
    """One entry, validated; artifact paths resolved against ``base`` (the manifest's folder)."""
    if not isinstance(raw, Mapping):
        return PlannedEntry(source, "?", error=f"an entry must be a mapping, got {type(raw).__name__}")
    data = {**(defaults or {}), **raw}
    name = str(data.get("name") or "?")
    try:
        entry = ManifestEntry.model_validate(data)
    except ValidationError as exc:
        return PlannedEntry(source, name, error=_problem(exc))
    if not entry.artifact.is_absolute():
        entry.artifact = base / entry.artifact
    return PlannedEntry(source, entry.name, entry=entry)


def plan_document(document: Any, path: Path) -> list[PlannedEntry]:
    """The entries of one manifest file's content."""
    base = path.parent
    if isinstance(document, list):
        return [parse_entry(raw, base=base, source=f"{path}[{i}]") for i, raw in enumerate(document)]
    if not isinstance(document, Mapping):
        return [
            PlannedEntry(str(path), path.stem, error="a manifest is a mapping (one model) or has `models:`")
        ]
    if "models" in document:
        unknown = sorted(set(document) - {"models", "defaults"})
        defaults = document.get("defaults") or {}
        models = document["models"]
        if unknown or not isinstance(defaults, Mapping) or not isinstance(models, list):
            reason = (
                f"unknown top-level keys {unknown} (expected models and defaults)"
                if unknown
                else "`models` must be a list and `defaults` a mapping"
            )
            return [PlannedEntry(str(path), path.stem, error=reason)]
        return [
            parse_entry(raw, base=base, source=f"{path}[{i}]", defaults=defaults)
            for i, raw in enumerate(models)
        ]
    raw = dict(document)
    if "artifact" not in raw and (sibling := _sibling_artifact(path)) is not None:
        raw["artifact"] = sibling.name
    return [parse_entry(raw, base=base, source=str(path))]


def manifest_files(path: Path) -> list[Path]:
    """``path`` itself, or every manifest file below the directory ``path`` (hidden ones skipped)."""
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in MANIFEST_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    return [path]


def plan(paths: Iterable[Path]) -> list[PlannedEntry]:
    """Every entry of the manifests at ``paths`` (files or directories); a file that cannot be read
    is one failed entry, named by its path. A name given twice fails unless each occurrence has its
    own explicit ``version``."""
    planned: list[PlannedEntry] = []
    for root in paths:
        if not root.exists():
            planned.append(PlannedEntry(str(root), root.stem, error=f"no such manifest: {root}"))
            continue
        files = manifest_files(root)
        if not files:
            suffixes = ", ".join(MANIFEST_SUFFIXES)
            planned.append(
                PlannedEntry(str(root), root.name, error=f"no manifest files ({suffixes}) in {root}")
            )
        for file in files:
            try:
                document = read_document(file)
            except (OSError, ValueError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
                planned.append(PlannedEntry(str(file), file.stem, error=f"cannot read the manifest: {exc}"))
                continue
            planned.extend(plan_document(document, file))
    _refuse_ambiguous_names(planned)
    return planned


def _refuse_ambiguous_names(planned: list[PlannedEntry]) -> None:
    by_name: dict[str, list[PlannedEntry]] = {}
    for p in planned:
        if p.entry is not None:
            by_name.setdefault(p.entry.name, []).append(p)
    for name, same in by_name.items():
        versions = [p.entry.version for p in same if p.entry is not None]
        if len(same) > 1 and (None in versions or len(set(versions)) != len(versions)):
            for p in same:
                p.entry, p.error = (
                    None,
                    (
                        f"model '{name}' appears {len(same)} times ({', '.join(q.source for q in same)}); "
                        "give each occurrence its own explicit `version`, or keep one"
                    ),
                )


# ---------------------------------------------------------------------------------- preparing


def infer_signature_from_rows(rows: list[dict[str, Any]]) -> Signature:
    """Input fields from example rows: booleans, numbers (as float: an int would refuse 1.5) and
    strings (as string: a handful of rows cannot list a category's values); a field that is null or
    missing in some row is nullable. Outputs are left to the model (or the manifest)."""
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    inputs = []
    for name in names:
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        if not present:
            raise OnboardingError(f"example_input: field '{name}' is null in every row; give a signature")
        if all(isinstance(v, bool) for v in present):
            kind = "bool"
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            kind = "float"
        elif all(isinstance(v, str) for v in present):
            kind = "string"
        else:
            kinds = ", ".join(sorted({type(v).__name__ for v in present}))
            raise OnboardingError(f"example_input: field '{name}' mixes types ({kinds}); give a signature")
        inputs.append(FieldSpec(name=name, type=kind, nullable=len(present) < len(values)))  # type: ignore[arg-type]
    return Signature(inputs=inputs)


@dataclass
class PreparedEntry:
    """An entry checked locally, with its bytes hashed and its version metadata built."""

    entry: ManifestEntry
    sha256: str
    metadata: dict[str, Any]


def _check_sklearn(entry: ManifestEntry, data: bytes, signature: Signature) -> tuple[Task | None, Signature]:
    """For a skops file whose types skops trusts by default: the task and outputs it implies, and
    proof that the example rows run through it. A file with other types is not loaded here (the
    registry records them; serving must allow them) and passes unchecked."""
    import pandas as pd
    import skops.io as sio
    from sklearn.base import is_classifier, is_regressor

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # any failure to read it: not a skops file
        raise OnboardingError(f"{entry.artifact.name} is not a skops file ({exc})") from exc
    if untrusted:
        return None, signature
    try:
        estimator = sio.loads(data)
    except Exception as exc:
        raise OnboardingError(f"{entry.artifact.name} does not load with skops: {exc}") from exc
    task: Task | None = (
        "classification" if is_classifier(estimator) else "regression" if is_regressor(estimator) else None
    )
    if not signature.outputs and task is not None:
        if task == "classification":
            classes = [c.item() if hasattr(c, "item") else c for c in getattr(estimator, "classes_", [])]
            ints = all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            output = FieldSpec(
                name="prediction",
                type="int" if ints else "category",
                categories=None if ints else [str(c) for c in classes],
            )
        else:
            output = FieldSpec(name="prediction", type="float")
        signature = signature.model_copy(update={"outputs": [output]})
    if entry.example_input:
        columns = [f.name for f in signature.inputs]
        frame = pd.DataFrame([[row.get(c) for c in columns] for row in entry.example_input], columns=columns)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # feature-name warnings for array-trained models
                estimator.predict(frame)
        except Exception as exc:  # the model's own refusal is the reason
            raise OnboardingError(
                f"the example input does not run through the model (does the signature match it?): "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
    return task, signature


def prepare(entry: ManifestEntry) -> PreparedEntry:
    """Check an entry locally (file, flavor, signature against the example rows, and for plain
    scikit-learn files the model against them) and build its version metadata."""
    path = entry.artifact
    if not path.is_file():
        raise OnboardingError(f"artifact not found: {path}")
    flavor = entry.flavor or FLAVOR_BY_SUFFIX.get(path.suffix.lower())
    if flavor is None:
        raise OnboardingError(
            f"unknown flavor for '{path.name}': name a .skops, .onnx or .zip file, or set `flavor` "
            "(sklearn, onnx, python); raw pickles are refused"
        )
    data = path.read_bytes()
    if not data:
        raise OnboardingError(f"artifact is empty: {path}")
    if entry.signature is None and not entry.example_input:
        raise OnboardingError("needs a `signature` or `example_input` rows to infer one from")
    signature = entry.signature or infer_signature_from_rows(entry.example_input or [])
    if entry.example_input:
        problems = validate_rows(signature, entry.example_input, prefix="example_input")
        if problems:
            shown = "; ".join(f"{p.field} {p.message}" for p in problems[:3])
            raise OnboardingError(f"example_input does not match the signature: {shown}")
    task = entry.task
    if flavor == "sklearn":
        inferred_task, signature = _check_sklearn(entry, data, signature)
        task = task or inferred_task
    metadata: dict[str, Any] = {
        "flavor": flavor,
        "task": task or "other",
        "signature": signature.model_dump(mode="json", exclude_none=True),
        "metrics": entry.metrics,
        "hyperparameters": entry.hyperparameters,
        "deploy_policy": entry.deploy_policy,
        "quota": entry.quota.model_dump(mode="json") if entry.quota else None,
        "image": entry.image,
        "example_input": entry.example_input,
        "tags": entry.tags,
        "description": entry.description,
        "aliases": entry.aliases,
        "version": entry.version,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return PreparedEntry(entry, metadata["sha256"], metadata)


# ---------------------------------------------------------------------------------- registering


def _reason(exc: FleetAPIError) -> str:
    detail = exc.problem.get("detail") or exc.problem.get("title") or ""
    field_ = f" (field: {exc.field})" if exc.field else ""
    return f"{exc.status}: {detail}{field_}"


def _ensure_model(client: Client, entry: ManifestEntry) -> None:
    """The model, created in the entry's team if missing; an existing one must be that team's."""
    try:
        model = client.get_model(entry.name)
    except FleetAPIError as exc:
        if exc.status != 404:
            raise
        try:
            client.create_model(entry.name, entry.team, description=entry.description, tags=entry.tags)
            return
        except FleetAPIError as create_exc:
            if create_exc.status != 409:  # created meanwhile by someone else: check it below
                raise
        model = client.get_model(entry.name)
    if model["team"] != entry.team:
        raise OnboardingError(f"model '{entry.name}' belongs to team '{model['team']}', not '{entry.team}'")


def register_entry(
    client: Client, entry: ManifestEntry, source: str, *, dry_run: bool = False
) -> EntryResult:
    """Register one entry; never raises for the entry's own faults (they are its result)."""
    result = EntryResult(name=entry.name, status="failed", source=source, team=entry.team)
    try:
        prepared = prepare(entry)
        result.sha256 = prepared.sha256
        if dry_run:
            result.status = "valid"
            return result
        _ensure_model(client, entry)
        version, created = client.register_artifact(entry.name, entry.artifact, prepared.metadata)
    except OnboardingError as exc:
        result.reason = str(exc)
        return result
    except FleetAPIError as exc:
        result.reason = _reason(exc)
        return result
    except (FleetUnavailable, OSError) as exc:
        result.reason = str(exc)
        return result
    result.version = int(version["version"])
    result.status = "registered" if created else "unchanged"
    return result


def register_planned(
    client: Client,
    planned: list[PlannedEntry],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    dry_run: bool = False,
    on_result: Callable[[EntryResult], None] | None = None,
) -> OnboardingReport:
    """Register planned entries on a bounded thread pool. Entries of one model run in order (by
    explicit version) on one worker; results keep the manifest's order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: dict[int, EntryResult] = {}
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(planned):
        if p.entry is None:
            results[i] = EntryResult(name=p.name, status="failed", source=p.source, reason=p.error)
            if on_result:
                on_result(results[i])
        else:
            groups.setdefault(p.entry.name, []).append(i)

    def run(indices: list[int]) -> None:
        for i in sorted(indices, key=lambda j: planned[j].entry.version or 0):  # type: ignore[union-attr]
            p = planned[i]
            assert p.entry is not None
            results[i] = register_entry(client, p.entry, p.source, dry_run=dry_run)
            if on_result:
                on_result(results[i])

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fleet-register") as pool:
        for future in [pool.submit(run, indices) for indices in groups.values()]:
            future.result()
    return OnboardingReport([results[i] for i in range(len(planned))])


def register_manifest(
    client: Client,
    *paths: Path | str,
    concurrency: int = DEFAULT_CONCURRENCY,
    dry_run: bool = False,
    on_result: Callable[[EntryResult], None] | None = None,
) -> OnboardingReport:
    """Register every entry of the manifests (files or directories) at ``paths``."""
    return register_planned(
        client, plan(Path(p) for p in paths), concurrency=concurrency, dry_run=dry_run, on_result=on_result
    )
