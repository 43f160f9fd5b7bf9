"""The model card that travels with a packed model (``MODEL_CARD.md``): what it is, its terms of use, the input it
expects, how it was trained, its thresholds, what it measured, and how to make it again.

:class:`ModelCard` renders the card; :func:`run_card` fills one from what a trained run folder knows about itself
(``model.json``, and the hold-out experiment's ``scores.json`` when there is one), which is what
``mitotype models ship RUN --out FOLDER`` writes. ``benchmarks/ship_model.py`` fills the same card with the shipped
model's own words and its measured figures (AMi-Br test split, leave-one-domain-out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitotype.models.calibration import Calibration
from mitotype.models.metadata import stored_calibration

INPUT_CONTRACT = (
    "128 x 128 RGB patches (uint8) centred on one mitotic figure, H&E, about 0.25 µm/px, as the MIDOG 2025\n"
    "Track 2 challenge gives them; other sizes are centre-cropped or black-padded to 128 by the readers. The\n"
    "model resizes to {input_size} px and normalises itself. Output: p(atypical); atypical is the positive class.")

THRESHOLDS = """{rule_text}:
**{threshold:.4f}** single view, **{threshold_tta:.4f}** with 8-view TTA (`--tta`). The challenge container uses
the TTA one with TTA on; its JSON's `confidence` is p(atypical) for every figure, whatever its class, because the
official evaluator takes `confidence` as each figure's ROC score as it stands."""

CALIBRATION = """One Platt map per way of scoring, `sigmoid(slope * logit(score) + intercept)`, fitted on
the validation slides' scores ({figures} figures, {prevalence:.1%} atypical): single view slope {single_slope:.3f},
intercept {single_intercept:.3f}; 8-view TTA slope {tta_slope:.3f}, intercept {tta_intercept:.3f}. It holds at that
share of atypical figures; at another, pass it (`mitotype predict --prevalence 0.1`, `predict(...,
prevalence=0.1)`): p is re-expressed by Bayes' rule and no decision moves."""

CALIBRATED = """
p(atypical) is calibrated: a Platt map fitted on the validation slides (at their {prevalence:.0%} atypical figures)
turns each score into the share of atypical figures among figures so scored. `mitotype predict`, `evaluate`,
`challenge` and `slides` report it and apply the thresholds above mapped onto it, **{threshold:.4f}** single view
and **{threshold_tta:.4f}** with TTA: the same decisions. `--threshold` is read on that scale; `predict
--uncalibrated` reports the raw scores, to which the thresholds above apply."""

RULE_TEXT = {
    "val-balanced-accuracy": "Chosen on the validation slides to maximise balanced accuracy",
    "val-platt": ("Where a Platt curve fitted on the validation slides' scores crosses their prevalence of "
                  "atypical figures (`threshold: val-platt`)"),
    "fixed": "Fixed in the configuration (`threshold: fixed`)",
}
"""How each ``threshold`` rule chose a model's thresholds, as its card says it."""

SCORE_COLUMNS = ("balanced_accuracy", "sensitivity", "specificity", "roc_auc")


@dataclass
class ModelCard:
    """The sections of a model card; :meth:`render` writes them in the card's fixed order."""

    name: str
    """The model's name (the card's title)."""
    summary: str
    """What the model is, first paragraph first (``mitotype models list`` shows that paragraph)."""
    terms: str
    """Terms of use: the training data's and the base weights' licences, and what it is not for."""
    recipe: str
    """How it was trained and which epoch was kept."""
    threshold_rule: str
    """The ``threshold`` rule its thresholds come from (a key of :data:`RULE_TEXT`)."""
    threshold: float
    """Single-view threshold on p(atypical)."""
    threshold_tta: float
    """8-view TTA threshold on p(atypical)."""
    input_size: int = 224
    """The size the model resizes its 128 px input to."""
    measured: str = ""
    """What it measured on held-out figures (empty: no such section)."""
    unseen: str = ""
    """A sub-section on domains it never saw (ends with a newline; empty: none)."""
    reproduce: Sequence[str] = field(default_factory=list)
    """The commands that make it again, one a line (empty: no such section)."""
    calibration: Mapping[str, Any] | None = None
    """The model's stored calibration maps (``model.json``'s ``calibration``: ``single`` and ``tta``), whose
    thresholds and section the card then shows; ``None`` or a view missing: a card without calibration."""
    calibration_measured: str = ""
    """What the calibration measured on held-out figures, appended to its section."""

    def render(self) -> str:
        """The card as Markdown."""
        maps = self._maps()
        thresholds = THRESHOLDS.format(rule_text=RULE_TEXT.get(self.threshold_rule, self.threshold_rule),
                                       threshold=self.threshold, threshold_tta=self.threshold_tta)
        if maps is not None:
            thresholds += "\n" + CALIBRATED.format(threshold=maps["single"].threshold(self.threshold),
                                                   threshold_tta=maps["tta"].threshold(self.threshold_tta),
                                                   prevalence=maps["single"].prevalence)
        sections = [("Terms of use", self.terms),
                    ("Input contract", INPUT_CONTRACT.format(input_size=self.input_size)),
                    ("Recipe", self.recipe),
                    ("Thresholds", thresholds)]
        if maps is not None:
            single, tta = maps["single"], maps["tta"]
            text = CALIBRATION.format(figures=single.figures, prevalence=single.prevalence, single_slope=single.slope,
                                      single_intercept=single.intercept, tta_slope=tta.slope,
                                      tta_intercept=tta.intercept)
            sections.append(("Calibration", text + (f"\n\n{self.calibration_measured}" if self.calibration_measured
                                                    else "")))
        if self.measured:
            sections.append(("Measured", self.measured))
        out = f"# {self.name}\n\n{self.summary}\n"
        for heading, body in sections:
            out += f"\n## {heading}\n\n{body}\n"
        if self.unseen:
            out += f"\n{self.unseen}"
        if self.reproduce:
            out += "\nReproduce:\n\n```bash\n" + "\n".join(self.reproduce) + "\n```\n"
        return out

    def _maps(self) -> dict[str, Calibration] | None:
        meta = {"calibration": dict(self.calibration or {})}
        single, tta = stored_calibration(meta, False), stored_calibration(meta, True)
        return None if single is None or tta is None else {"single": single, "tta": tta}


def scores_table(single: Mapping[str, float], tta: Mapping[str, float]) -> str:
    """The card's table of test figures, single view and 8-view TTA (keys of :data:`SCORE_COLUMNS`)."""
    rows = ["| | balanced accuracy | sensitivity | specificity | ROC AUC |", "| --- | --- | --- | --- | --- |"]
    for label, scores in (("single view", single), ("8-view TTA", tta)):
        rows.append(f"| {label} | " + " | ".join(f"{scores[k]:.3f}" for k in SCORE_COLUMNS) + " |")
    return "\n".join(rows)


def run_card(meta: Mapping[str, Any], name: str, *, strategies: Sequence[str] = (),
             scores: Mapping[str, Any] | None = None, command: str | None = None,
             source: str = "", base_weights: str | None = None) -> ModelCard:
    """The card of a trained run from its ``model.json`` (``meta``), the strategies it trained with, the hold-out
    experiment's ``scores.json`` when it has one, and the command that trained it when known. ``base_weights``:
    the weights training started from, ``""`` for the backbone's default (a packed model's own configuration
    says ``random``: it holds every tensor)."""
    config = meta.get("config", {})
    model, optim, data = config.get("model", {}), config.get("optim", {}), config.get("data", {})
    stored = (meta.get("preprocessing") or {}).get("input_size") or [224]  # what the model resizes to (C, H, W)
    backbone, size = model.get("backbone", "?"), int(model.get("input_size") or stored[-1])
    adaptation = {"full": "fully fine-tuned", "lora": "adapted with LoRA", "frozen": "frozen backbone, heads trained"}
    data_text = " + ".join(s.get("path", "?") for s in data.get("sources", [])) or data.get("path") or "?"
    base = base_weights if base_weights is not None else model.get("weights")
    started = f"`{base}` weights" if base else "the backbone's default weights"
    summary = (f"{backbone} at {size} px, trained with mitotype on {data_text}"
               f"{' (' + source + ')' if source else ''}.\n\n"
               f"Started from {started}, "
               f"{adaptation.get(model.get('adaptation'), 'adapted')}; pass this folder as `--model` to "
               "`mitotype predict`, `evaluate` or `challenge`.")
    terms = ("The terms of its training data and of the base weights apply (see their licences). Not a medical "
             "device, not for diagnosis.")
    kept = meta.get("metrics", {})
    on = ", ".join(strategies) if strategies else "none"
    recipe = (f"Seed {config.get('seed', '?')}: {optim.get('epochs', '?')} epochs, AdamW "
              f"({optim.get('schedule', '?')}) at lr {optim.get('lr', '?')}, batch {optim.get('batch_size', '?')}; "
              f"strategies on: {on}.")
    if "epoch" in kept:
        recipe += (f" Epoch {kept['epoch']} was kept (validation balanced accuracy "
                   f"{kept.get('balanced_accuracy', float('nan')):.3f}, ROC AUC "
                   f"{kept.get('roc_auc') or float('nan'):.3f}).")
    measured = ""
    if scores and "test_balanced_accuracy" in scores:
        single = {k: scores.get(f"test_{k}", float("nan")) for k in SCORE_COLUMNS}
        tta = {k: scores.get(f"test_{k}_tta", float("nan")) for k in SCORE_COLUMNS}
        measured = (f"The hold-out experiment's test figures ({scores.get('n_test', '?')} figures), as the run scored "
                    f"them at its own thresholds:\n\n{scores_table(single, tta)}")
    threshold_tta = meta.get("threshold_tta")  # absent from a run stopped before its end: TTA takes the single one
    return ModelCard(name=name, summary=summary, terms=terms, recipe=recipe,
                     threshold_rule=config.get("threshold", "val-balanced-accuracy"),
                     threshold=float(meta["threshold"]),
                     threshold_tta=float(meta["threshold"] if threshold_tta is None else threshold_tta),
                     input_size=size, measured=measured, reproduce=[command] if command else [],
                     calibration=meta.get("calibration") or None)


__all__ = ["INPUT_CONTRACT", "RULE_TEXT", "SCORE_COLUMNS", "ModelCard", "run_card", "scores_table"]
