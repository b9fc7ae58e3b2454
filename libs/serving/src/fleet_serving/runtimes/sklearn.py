"""scikit-learn models stored with skops: loaded without pickle, trusting only allowlisted types."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from fleet_core.schemas import JsonValue
from fleet_core.serving import ModelSpec
from fleet_serving.errors import ModelLoadError, PredictionError, UntrustedArtifactError
from fleet_serving.runtimes.base import Rows, Runtime, predictions_to_json
from fleet_serving.runtimes.frames import rows_to_frame

SKOPS_ALLOWLIST: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        # skops checks the function a partial wraps as its own node, so a partial of anything not
        # trusted is still refused; sklearn stores partial(check_array, ...) in FunctionTransformer
        # and ColumnTransformer internals.
        "functools.partial",
        "sklearn.utils.validation.check_array",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
)
"""Types skops does not trust by default that sklearn estimators need; nothing else is loaded."""


def trusted_types(untrusted: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The untrusted types skops reported, if every one is allowed; otherwise refuse them all."""
    allowed = SKOPS_ALLOWLIST | set(extra)
    found = sorted(set(untrusted))
    refused = [t for t in found if t not in allowed]
    if refused:
        raise UntrustedArtifactError(
            f"the skops artifact needs types that are not trusted for serving: {refused}; "
            "only allowlisted sklearn/numpy/scipy types are loaded "
            "(add library types with FLEET_SERVING_TRUSTED_TYPES)",
            field="artifact",
        )
    return found


class SklearnRuntime(Runtime):
    """A fitted estimator or pipeline from a skops file."""

    flavor = "sklearn"

    def __init__(self, spec: ModelSpec, artifact: bytes, *, extra_trusted: Iterable[str] = ()) -> None:
        super().__init__(spec, artifact)
        self.extra_trusted = tuple(extra_trusted)
        self.model: Any = None
        self._feature_names: list[str] | None = None
        self._matrix_columns: list[str] | None = None
        self._matrix_predict: Callable[[np.ndarray], Any] | None = None

    def _load(self, artifact: bytes) -> None:
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(data=artifact)
        except Exception as exc:  # skops raises zip, key and type errors for foreign bytes
            raise ModelLoadError(f"{self.spec.key}: not a skops file ({exc})", field="artifact") from exc
        trusted = trusted_types(untrusted, self.extra_trusted)
        try:
            self.model = sio.loads(artifact, trusted=trusted)
        except Exception as exc:
            raise ModelLoadError(f"{self.spec.key}: skops could not load the model: {exc}") from exc
        if not hasattr(self.model, "predict"):
            raise ModelLoadError(f"{self.spec.key}: {type(self.model).__name__} has no predict()")
        names = getattr(self.model, "feature_names_in_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None
        if self._feature_names is not None:
            missing = sorted(set(self._feature_names) - set(self.input_names))
            if missing:
                raise ModelLoadError(
                    f"{self.spec.key}: the model was fitted on columns {missing} the signature lacks"
                )
        self._matrix_columns = self._numeric_fast_path()
        if self._matrix_columns is not None:
            self._matrix_predict = self._forest_fast_path(self._matrix_columns) or self.model.predict

    def _numeric_fast_path(self) -> list[str] | None:
        """Column order for feeding an all-numeric model a plain float matrix, or None.

        Building a one-row DataFrame and having sklearn validate it costs ~1.3 ms; a float matrix
        ~0.1 ms. Only taken when every input is a numeric scalar and the model gives the same
        answers both ways on the version's example input (a ColumnTransformer that selects
        columns by name, for one, refuses a matrix and keeps the DataFrame path)."""
        inputs = self.spec.signature.inputs
        if any(f.type not in {"float", "int", "bool"} or f.shape is not None for f in inputs):
            return None
        columns = self._feature_names or self.input_names
        probe = self._probe_rows()
        try:
            expected = self._predict_frame(probe)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = predictions_to_json(self.model.predict(self._matrix(probe, columns)))
        except Exception:
            return None
        return columns if actual == expected else None

    def _probe_rows(self) -> Rows:
        """The rows a fast path is checked on at load: the version's example input, else minima."""
        return self.spec.example_input or [{f.name: f.minimum or 0.0 for f in self.spec.signature.inputs}]

    def _forest_fast_path(self, columns: list[str]) -> Callable[[np.ndarray], Any] | None:
        """A random or extra-trees forest's ``predict`` without joblib, or None.

        sklearn's forest ``predict`` runs its trees through ``joblib.Parallel`` even with
        ``n_jobs=None``, and each tree's dispatch (config context, warning filters, wrappers)
        costs more than the tree: a 40-tree forest takes ~1.9 ms for one row on this box, ~85 % of
        a pool replica's prediction time in the fleet benchmark. This sums the trees' own
        ``predict_proba``/``predict`` (``check_input=False``, on the float32 matrix the forest
        would make) in sklearn's order, so the answer is the same; taken only for those exact
        classes with one output, and only when it gives the same answers as ``predict`` on the
        version's example input."""
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            ExtraTreesRegressor,
            RandomForestClassifier,
            RandomForestRegressor,
        )

        model = self.model
        kind = type(model)
        if getattr(model, "n_outputs_", None) != 1 or not getattr(model, "estimators_", None):
            return None
        trees = list(model.estimators_)

        def classify(matrix: np.ndarray) -> Any:
            x = np.ascontiguousarray(matrix, dtype=np.float32)
            proba = np.zeros((x.shape[0], model.n_classes_), dtype=np.float64)
            for tree in trees:
                proba += tree.predict_proba(x, check_input=False)
            proba /= len(trees)
            return model.classes_.take(np.argmax(proba, axis=1), axis=0)

        def regress(matrix: np.ndarray) -> Any:
            x = np.ascontiguousarray(matrix, dtype=np.float32)
            total = np.zeros(x.shape[0], dtype=np.float64)
            for tree in trees:
                total += tree.predict(x, check_input=False)
            return total / len(trees)

        if kind in (RandomForestClassifier, ExtraTreesClassifier):
            fast = classify
        elif kind in (RandomForestRegressor, ExtraTreesRegressor):
            fast = regress
        else:
            return None
        probe = self._matrix(self._probe_rows(), columns)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = predictions_to_json(fast(probe)) == predictions_to_json(model.predict(probe))
        except Exception:
            return None
        return fast if same else None

    @staticmethod
    def _matrix(rows: Rows, columns: list[str]) -> np.ndarray:
        return np.array(
            [[np.nan if (v := row.get(c)) is None else v for c in columns] for row in rows], dtype=np.float64
        )

    def _predict_frame(self, rows: Rows) -> list[JsonValue]:
        frame = rows_to_frame(self.spec.signature, rows)
        # Fitted on a DataFrame: give it the columns it knows, in its order. Fitted on an array:
        # give it the matrix in signature order, as the SDK's training frame had it.
        model_input: Any = frame[self._feature_names] if self._feature_names else frame.to_numpy()
        return predictions_to_json(self.model.predict(model_input))

    def _predict(self, rows: Rows) -> list[JsonValue]:
        try:
            if self._matrix_predict is not None and self._matrix_columns is not None:  # set together
                return predictions_to_json(self._matrix_predict(self._matrix(rows, self._matrix_columns)))
            return self._predict_frame(rows)
        except (ValueError, TypeError, KeyError) as exc:
            raise PredictionError(f"{self.spec.key}: the model refused the input: {exc}") from exc


# The numeric fast path hands a matrix to models fitted on a DataFrame, on purpose (see
# ``SklearnRuntime._numeric_fast_path``); sklearn's warning about it would fire on every request.
warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
