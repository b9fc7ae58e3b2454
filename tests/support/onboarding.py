"""Small scikit-learn model files and example rows for the onboarding tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

FEATURES = ["f0", "f1", "f2"]
ROWS = [{"f0": 0.1, "f1": 2, "f2": -1.5}, {"f0": 1.0, "f1": 0, "f2": 0.5}]


def skops_file(path: Path, estimator: object | None = None, *, seed: int = 0) -> Path:
    """A model over FEATURES fitted on seeded data, written with skops to ``path``."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=FEATURES)
    model = LogisticRegression() if estimator is None else estimator
    model.fit(X, (X["f0"] + X["f1"] * (1 if seed % 2 else -1) > 0).astype(int))  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sio.dumps(model))
    return path
