"""Reading and checking onboarding manifests: formats, defaults, relative paths, inferred flavors and
signatures, and entries that fail on their own with a reason that names what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression

from fleet_sdk.onboarding import (
    ManifestEntry,
    OnboardingError,
    infer_signature_from_rows,
    plan,
    prepare,
)
from support.onboarding import FEATURES, ROWS, skops_file


def write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(document))
    else:
        path.write_text(yaml.safe_dump(document))
    return path


def test_a_multi_model_manifest_applies_its_defaults_and_resolves_paths_against_itself(
    tmp_path: Path,
) -> None:
    skops_file(tmp_path / "ci" / "models" / "a.skops")
    manifest = write(
        tmp_path / "ci" / "fleet.yaml",
        {
            "defaults": {"team": "growth", "deploy_policy": "direct", "tags": ["tabular"]},
            "models": [
                {"name": "a", "artifact": "models/a.skops", "example_input": ROWS},
                {"name": "b", "artifact": "models/b.onnx", "team": "risk", "example_input": ROWS},
            ],
        },
    )
    a, b = plan([manifest])
    assert a.entry is not None and b.entry is not None
    assert (a.entry.team, a.entry.deploy_policy, a.entry.tags) == ("growth", "direct", ["tabular"])
    assert b.entry.team == "risk"
    assert a.entry.artifact == tmp_path / "ci" / "models" / "a.skops"
    assert a.source == f"{manifest}[0]"


def test_a_directory_is_every_manifest_below_it_in_yaml_json_or_toml(tmp_path: Path) -> None:
    skops_file(tmp_path / "m" / "churn" / "churn.skops")
    # A one-model manifest next to its file needs not name it.
    write(tmp_path / "m" / "churn" / "churn.yaml", {"name": "churn", "team": "growth", "example_input": ROWS})
    write(
        tmp_path / "m" / "fraud" / "model.json",
        {"name": "fraud", "team": "risk", "artifact": "f.skops", "example_input": ROWS},
    )
    (tmp_path / "m" / "ltv.toml").write_text(
        'name = "ltv"\nteam = "growth"\nartifact = "ltv.skops"\n\n[[example_input]]\nf0 = 1.0\n'
    )
    write(tmp_path / "m" / ".hidden" / "skip.yaml", {"name": "hidden"})
    (tmp_path / "m" / "notes.txt").write_text("not a manifest")
    planned = plan([tmp_path / "m"])
    assert [p.name for p in planned] == ["churn", "fraud", "ltv"]
    assert all(p.error is None for p in planned), [p.error for p in planned]
    assert planned[0].entry is not None
    assert planned[0].entry.artifact == tmp_path / "m" / "churn" / "churn.skops"


def test_an_unknown_field_fails_that_entry_by_name_and_not_the_others(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "fleet.yaml",
        {
            "defaults": {"team": "t"},
            "models": [
                {"name": "good", "artifact": "g.skops"},
                {"name": "typo", "artifact": "t.skops", "deploy_polcy": "direct"},
                {"name": "Bad Name", "artifact": "b.skops"},
                {"name": "no-team-no-file", "team": None},
            ],
        },
    )
    good, typo, bad, missing = plan([manifest])
    assert good.error is None
    assert typo.name == "typo" and "deploy_polcy" in (typo.error or "")
    assert "name" in (bad.error or "")
    assert "team" in (missing.error or "") and "artifact" in (missing.error or "")


def test_a_name_given_twice_fails_unless_each_has_its_own_version(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "fleet.yaml",
        {
            "defaults": {"team": "t"},
            "models": [
                {"name": "twice", "artifact": "a.skops"},
                {"name": "twice", "artifact": "b.skops"},
                {"name": "versioned", "artifact": "a.skops", "version": 1},
                {"name": "versioned", "artifact": "b.skops", "version": 2},
            ],
        },
    )
    planned = plan([manifest])
    assert ["appears 2 times" in (p.error or "") for p in planned] == [True, True, False, False]


def test_unreadable_or_missing_manifests_are_failed_entries_named_by_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [ {name: a\n")
    scalar = write(tmp_path / "scalar.json", 42)
    (tmp_path / "empty-dir").mkdir()
    planned = plan([broken, scalar, tmp_path / "absent.yaml", tmp_path / "empty-dir"])
    assert [p.source for p in planned][:3] == [str(broken), str(scalar), str(tmp_path / "absent.yaml")]
    assert "no manifest files" in (planned[3].error or "")
    assert "cannot read the manifest" in (planned[0].error or "")
    assert "mapping" in (planned[1].error or "")
    assert "no such manifest" in (planned[2].error or "")


def test_signatures_inferred_from_rows_keep_types_not_guesses() -> None:
    sig = infer_signature_from_rows(
        [
            {"amount": 3, "ratio": 0.5, "member": True, "city": "Oslo"},
            {"amount": 4.5, "ratio": None, "member": False, "city": "Rome"},
        ]
    )
    assert {f.name: (f.type, f.nullable) for f in sig.inputs} == {
        "amount": ("float", False),  # an int in one row is no promise that 1.5 is refused
        "ratio": ("float", True),
        "member": ("bool", False),
        "city": ("string", False),  # two rows cannot list a category's values
    }
    with pytest.raises(OnboardingError, match="mixes types"):
        infer_signature_from_rows([{"x": 1}, {"x": "one"}])


def entry(tmp_path: Path, **fields: object) -> ManifestEntry:
    data: dict[str, object] = {"name": "m", "team": "t", "artifact": tmp_path / "m.skops", **fields}
    return ManifestEntry.model_validate(data)


def test_prepare_infers_flavor_task_and_outputs_from_a_scikit_learn_file(tmp_path: Path) -> None:
    skops_file(tmp_path / "m.skops")
    prepared = prepare(entry(tmp_path, example_input=ROWS))
    meta = prepared.metadata
    assert (meta["flavor"], meta["task"]) == ("sklearn", "classification")
    assert [f["name"] for f in meta["signature"]["inputs"]] == FEATURES
    assert meta["signature"]["outputs"] == [
        {"name": "prediction", "type": "int", "pii": False, "nullable": False}
    ]
    assert meta["sha256"] == prepared.sha256 and len(prepared.sha256) == 64

    skops_file(tmp_path / "r.skops", LinearRegression())
    reg = prepare(entry(tmp_path, artifact=tmp_path / "r.skops", example_input=ROWS))
    assert reg.metadata["task"] == "regression"


def test_example_rows_that_do_not_match_the_signature_fail_naming_the_field(tmp_path: Path) -> None:
    skops_file(tmp_path / "m.skops")
    signature = {"inputs": [{"name": f, "type": "float"} for f in FEATURES]}
    rows = [{"f0": 0.1, "f1": "two", "f2": 0.0}]
    with pytest.raises(OnboardingError, match=r"example_input\.f1 expected a number"):
        prepare(entry(tmp_path, signature=signature, example_input=rows))


def test_a_signature_the_model_does_not_take_fails_before_anything_is_sent(tmp_path: Path) -> None:
    skops_file(tmp_path / "m.skops")
    wrong = {"inputs": [{"name": f, "type": "float"} for f in ("a", "b")]}
    with pytest.raises(OnboardingError, match="does not run through the model"):
        prepare(entry(tmp_path, signature=wrong, example_input=[{"a": 1.0, "b": 2.0}]))


def test_a_file_with_types_skops_does_not_trust_is_not_loaded_but_still_registers(tmp_path: Path) -> None:
    skops_file(tmp_path / "m.skops", RandomForestClassifier(n_estimators=2))
    prepared = prepare(entry(tmp_path, example_input=ROWS, task="classification"))
    assert prepared.metadata["signature"]["outputs"] == []  # not loaded: outputs left to the server


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"artifact": "nowhere.skops"}, "artifact not found"),
        ({"artifact": "model.pkl"}, "unknown flavor for 'model.pkl'"),
        ({}, "needs a `signature` or `example_input`"),
        ({"artifact": "junk.skops", "example_input": ROWS}, "not a skops file"),
    ],
)
def test_bad_entries_fail_with_their_reason(tmp_path: Path, fields: dict[str, object], reason: str) -> None:
    skops_file(tmp_path / "m.skops")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04pickle")
    (tmp_path / "junk.skops").write_bytes(b"not a zip at all")
    if "artifact" in fields:
        fields = {**fields, "artifact": tmp_path / str(fields["artifact"])}
    with pytest.raises(OnboardingError, match=reason.replace("`", ".").replace("'", ".")):
        prepare(entry(tmp_path, **fields))
