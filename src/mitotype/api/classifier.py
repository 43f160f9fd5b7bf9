"""``mitotype.load()`` and the classifier it returns: trained models on figures a program holds.

The command line's ``mitotype predict`` is a thin layer over this module (it reads its input with
`read_figures`, classifies with `Classifier.predict` and writes
`Predictions.rows`), so both give the same p(atypical), classes and thresholds. Where every model
has a current ONNX graph and the device is the CPU, nothing here imports torch
(`mitotype.models.inference`); nothing here prints: problems are raised as one-line
`MitotypeError` subclasses.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.api.figures import as_figures
from mitotype.data.labels import CLASS_NAMES
from mitotype.data.patches import DEFAULT_SIZE_POLICY
from mitotype.errors import ConfigError, MitotypeError, path_error
from mitotype.models.calibration import shift_prior
from mitotype.models.inference import Predictor, load_predictor
from mitotype.models.metadata import calibrated_prevalence, stored_calibration
from mitotype.models.onnx_ensemble import OnnxEnsemble
from mitotype.serving.challenge import MANIFEST, read_export

__all__ = ["Classifier", "Predictions", "load"]

ModelSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
"""What `load` takes: ``None`` (the shipped model), a shipped model's name, a model folder, a folder of
fold models (a cross-validation run), an exported model (``.tar.gz`` or its unpacked folder), or a list of
model folders to ensemble."""

TARBALL_SUFFIXES = (".tar.gz", ".tgz")


@dataclass(frozen=True, eq=False)  # numpy fields: compare p_atypical, not the objects
class Predictions:
    """p(atypical) and the decision for each figure, in the order the figures were given.

    ``atypical[i]`` is ``p_atypical[i] >= threshold``; atypical is the positive class.
    """

    ids: list[str]
    """One id per figure (see `mitotype.api.FigureBatch.ids`)."""
    p_atypical: np.ndarray
    """float64 (N,): the probability that each figure is atypical, whatever the decision: calibrated on the
    models' validation slides where they store a calibration (at ``prevalence``), else the models' raw score."""
    threshold: float
    """The threshold applied: the models' own (chosen on their validation slides, for single view or 8-view
    TTA as applied), unless one was given."""
    tta: bool = False
    """Whether the 8 dihedral views were averaged."""
    labels: list[int | None] | None = None
    """The input's own label per figure (1 atypical, 0 normal, ``None`` unknown) where it has any."""
    notes: list[str] = field(default_factory=list)
    """What reading the figures found worth saying (images converted or resized, records skipped)."""
    models_not_adapted: list[Path] = field(default_factory=list)
    """Models that ``adapt_bn`` left as they were (no BatchNorm layers, e.g. a ViT)."""
    calibrated: bool = False
    """Whether ``p_atypical`` is calibrated (every model stores a calibration and it was not turned off)."""
    prevalence: float | None = None
    """The share of atypical figures at which the calibrated ``p_atypical`` holds: the models' validation
    slides', or the one asked for; ``None`` for raw scores."""
    atypical: np.ndarray = field(init=False)
    """bool (N,): ``p_atypical >= threshold``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "atypical", np.asarray(self.p_atypical) >= self.threshold)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def classes(self) -> list[str]:
        """``"atypical"`` or ``"normal"`` per figure."""
        return [CLASS_NAMES[int(a)] for a in self.atypical]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per figure with the columns of ``mitotype predict``'s output: ``id``, ``p_atypical``,
        ``class``, ``threshold``, and ``label`` (``atypical``, ``normal`` or empty) where the input has labels."""
        rows = [{"id": i, "p_atypical": float(p), "class": c, "threshold": float(self.threshold)}
                for i, p, c in zip(self.ids, self.p_atypical, self.classes)]
        if self.labels is not None:
            for row, label in zip(rows, self.labels):
                row["label"] = "" if label is None else CLASS_NAMES[int(label)]
        return rows

    def to_pandas(self) -> Any:
        """The `rows` as a ``pandas.DataFrame`` (pandas is not a dependency of mitotype: install it)."""
        try:
            import pandas
        except ImportError:
            raise MitotypeError("Predictions.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.rows(), columns=["id", "p_atypical", "class", "threshold"]
                                + (["label"] if self.labels is not None else []))


class Classifier:
    """Trained model(s) ready to classify mitotic figures; made by `load`.

    Fold models are ensembled by averaging their probabilities; the threshold is their mean validation
    threshold (an exported model's packed one where it has it).
    """

    def __init__(self, predictor: Predictor, members: list[Path], *, device: str, runtime: str,
                 allow_unfinished: bool, base_weights: str | None = None, manifest: dict | None = None,
                 name: str = "") -> None:
        self._predictor = predictor
        self._adapting: Predictor | None = None
        self._members = members
        self._device, self._runtime = device, runtime
        self._allow_unfinished, self._base_weights = allow_unfinished, base_weights
        self._manifest = manifest or {}
        self._name = name or ", ".join(str(m) for m in members)

    @property
    def name(self) -> str:
        """What was loaded: a shipped model's name, or the path(s) given."""
        return self._name

    @property
    def models(self) -> list[Path]:
        """The model folders (one per ensemble member)."""
        return list(self._predictor.dirs)

    @property
    def engine(self) -> str:
        """``onnx`` (ONNX Runtime on the CPU, no torch) or ``torch`` (PyTorch)."""
        return "onnx" if isinstance(self._predictor, OnnxEnsemble) else "torch"

    def threshold(self, tta: bool = False, calibrated: bool = True) -> float:
        """The decision threshold on p(atypical) that `predict` applies (with or without TTA), on the scale it
        reports p on (an exported model's packed threshold is on that scale too)."""
        packed = self._manifest.get("threshold_tta" if tta else "threshold")
        if packed is not None and calibrated:
            return float(packed)
        return self._predictor.threshold(tta, calibrated)

    def calibrated_prevalence(self, tta: bool = False) -> float | None:
        """The share of atypical figures at which the calibrated p(atypical) holds (the validation slides'),
        or ``None`` when the models store no calibration (their raw scores are reported)."""
        return calibrated_prevalence(self._predictor.metas, tta)

    def predict(self, figures: Any, *, tta: bool = False, batch_size: int = 64, threshold: float | None = None,
                size_policy: str = DEFAULT_SIZE_POLICY, adapt_bn: str = "off", stack_size: int = 16,
                calibrated: bool = True, prevalence: float | None = None) -> Predictions:
        """p(atypical) and the decision for each figure.

        Args:
            figures: a uint8 numpy array (H, W, 3) or batch (N, H, W, 3); a PIL image; a path to an image, a
                TIFF stack (every page a figure), a folder of patches (any depth), a ``.txt`` list or any
                dataset the readers understand; a `FigureBatch`; or a list of these.
                Any size: figures that are not 128 x 128 go through ``size_policy``.
            tta: average p(atypical) over the 8 dihedral views (flips and quarter turns).
            batch_size: figures per forward pass (with TTA, views per forward pass).
            threshold: a threshold on p(atypical) to apply instead of the models' own.
            size_policy: ``center-crop`` (default: crop or black-pad around the centre), ``resize``, ``reject``.
            adapt_bn: ``off``; ``domain`` re-estimates BatchNorm statistics on all the figures, ``stack`` on
                each ``stack_size`` of them in order (AdaBN, no labels; runs in PyTorch).
            stack_size: figures per group for ``adapt_bn="stack"``.
            calibrated: report p(atypical) through each model's calibration map (fitted on its validation
                slides; decisions unchanged) where every model has one; ``False``: the raw scores.
            prevalence: the share of atypical figures expected in the input (e.g. ``0.1``): the calibrated
                p(atypical) is re-expressed at it (Bayes' rule; decisions unchanged). Needs calibrated models.

        Returns:
            The `Predictions`, one per figure in the order given.

        Raises:
            DataError: figures that cannot be used (wrong dtype or shape, a missing path, an empty list...).
            MitotypeError: an invalid option, or a model that cannot run here.
        """
        # numbers.Real / Integral: numpy's scalars too (np.float32(0.3), np.int64(32)), as a notebook computes them
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                      or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0):
            raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ConfigError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
        batch_size = int(batch_size)
        source = self.calibrated_prevalence(tta) if calibrated else None
        if prevalence is not None:
            if (isinstance(prevalence, bool) or not isinstance(prevalence, numbers.Real)
                    or not 0.0 < prevalence < 1.0):
                raise ConfigError(f"prevalence must be a share strictly between 0 and 1, got {prevalence!r}")
            if not calibrated:
                raise ConfigError("prevalence re-expresses calibrated probabilities; it cannot go with "
                                  "calibrated=False (the raw scores)")
            if source is None:
                scores = "8-view TTA" if tta else "single-view"
                raw = [str(d) for d, m in zip(self._predictor.dirs, self._predictor.metas)
                       if stored_calibration(m, tta) is None]
                if len(raw) == len(self._predictor.dirs):
                    raise ConfigError("prevalence re-expresses calibrated probabilities, and these models store no "
                                      f"calibration for {scores} scores")
                raise ConfigError(f"prevalence re-expresses calibrated probabilities, and {len(raw)} of the "
                                  f"{len(self._predictor.dirs)} models store no calibration for {scores} scores (e.g. "
                                  f"{raw[0]}), so the ensemble reports raw scores")
            prevalence = float(prevalence)
        batch = as_figures(figures, size_policy=size_policy)
        predictor = self._predictor_for(adapt_bn)
        p = np.asarray(predictor.predict(batch.images, batch_size=batch_size, tta=tta, adapt_bn=adapt_bn,
                                         stack_size=stack_size, calibrated=calibrated), dtype=np.float64)
        applied = float(threshold) if threshold is not None else self.threshold(tta, calibrated)
        if prevalence is not None and source is not None:
            p = shift_prior(p, source, prevalence)
            if threshold is None:  # the models' own decision, re-expressed on the same scale: no decision moves
                applied = float(shift_prior(np.array([applied]), source, prevalence)[0])
        return Predictions(batch.ids, p, applied, tta=tta, labels=batch.labels, notes=list(batch.notes),
                           models_not_adapted=list(predictor.without_batchnorm), calibrated=source is not None,
                           prevalence=prevalence if prevalence is not None else source)

    def _predictor_for(self, adapt_bn: str) -> Predictor:
        """The engine for this call: BatchNorm adaptation runs in PyTorch, loaded the first time it is asked for."""
        if adapt_bn == "off" or not isinstance(self._predictor, OnnxEnsemble):
            return self._predictor
        if self._adapting is None:
            self._adapting = load_predictor(self._members, device=self._device, base_weights=self._base_weights,
                                            allow_unfinished=self._allow_unfinished, runtime=self._runtime,
                                            adapt_bn=adapt_bn)
        return self._adapting

    def __repr__(self) -> str:
        return (f"Classifier({self.name!r}, models={len(self.models)}, engine={self.engine!r}, "
                f"threshold={self.threshold():.3f})")


def load(model: ModelSpec = None, *, device: str = "auto", runtime: str = "auto",
         allow_unfinished: bool = False) -> Classifier:
    """Load trained model(s) for classifying figures in Python.

    Args:
        model: ``None`` for the model that ships with mitotype (EfficientNet-Lite0 trained on AMi-Br; see
            its ``MODEL_CARD.md``), a shipped model's name, a model folder, a folder of fold models (a
            cross-validation run: ensembled), an exported model (``mitotype export``'s ``.tar.gz`` or its
            unpacked folder), or a list of model folders.
        device: ``auto`` (a CUDA GPU where torch sees one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        runtime: ``auto`` (ONNX Runtime on the CPU where every model has a current ``model.onnx``, without
            torch; else PyTorch), ``onnx`` (ONNX Runtime or an error) or ``torch``.
        allow_unfinished: accept a model folder whose training did not finish (its best epoch so far).

    Returns:
        A `Classifier`; call `Classifier.predict` on figures.

    Raises:
        MitotypeError: no model at that path, a damaged model, an unknown device or runtime; a
            ``MissingExtraError`` where the model needs PyTorch and the training extra is not installed.
    """
    members, base_weights, manifest, name, unpacked = _resolve(model)
    try:
        predictor = load_predictor(members, device=device, base_weights=base_weights,
                                   allow_unfinished=allow_unfinished, runtime=runtime)
    except BaseException:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)
        raise
    classifier = Classifier(predictor, members, device=device, runtime=runtime, allow_unfinished=allow_unfinished,
                            base_weights=base_weights, manifest=manifest, name=name)
    if unpacked is not None:  # the unpacked tarball lives as long as the classifier that reads it
        weakref.finalize(classifier, shutil.rmtree, unpacked, True)
    return classifier


def _resolve(model: ModelSpec) -> tuple[list[Path], str | None, dict, str, Path | None]:
    """Member folders, base weights, manifest, a name, and the temporary folder of an unpacked tarball."""
    from mitotype.models.shipped import get_shipped_model, list_shipped_models

    if model is None:
        shipped = get_shipped_model()
        return [shipped.folder], None, {}, shipped.name, None
    if isinstance(model, Sequence) and not isinstance(model, str):
        if not model:
            raise MitotypeError("model: the list is empty; name at least one model folder")
        return [Path(m) for m in model], None, {}, ", ".join(str(m) for m in model), None
    path = Path(model).expanduser()
    if not path.exists() and isinstance(model, str) and model in {m.name for m in list_shipped_models()}:
        shipped = get_shipped_model(model)
        return [shipped.folder], None, {}, shipped.name, None
    unpacked = None
    if path.is_file() and path.name.lower().endswith(TARBALL_SUFFIXES):
        unpacked = _unpack(path)
        root = unpacked
    else:
        root = path
    if (root / MANIFEST).is_file():
        exported = read_export(root)
        return exported.members, exported.base_weights, exported.manifest, str(path), unpacked
    return [root], None, {}, str(path), unpacked


def _unpack(tarball: Path) -> Path:
    """An exported model's tarball unpacked into a new temporary folder (links and absolute paths refused)."""
    target = Path(tempfile.mkdtemp(prefix="mitotype-model-"))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError):
            raise path_error(exc, tarball) from None
        raise MitotypeError(f"{tarball}: not a readable model tarball ({exc})") from None
    return target
