"""Cross-validation: every figure predicted once, the held-out domain never reaching selection, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mitotype.errors import ConfigError
from mitotype.experiments import cv as cv_module
from mitotype.experiments.cv import run_cv
from mitotype.training.config import load_config
from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES


@pytest.fixture
def spy_trainers(monkeypatch):
    """Record the train/validation indices every fold's trainer receives."""
    seen = []
    original = Trainer.__init__

    def init(self, config, records, images, train_idx, val_idx, out_dir, **kw):
        seen.append((np.asarray(train_idx), np.asarray(val_idx)))
        original(self, config, records, images, train_idx, val_idx, out_dir, **kw)

    monkeypatch.setattr(Trainer, "__init__", init)
    return seen


@pytest.mark.slow
def test_lodo_predicts_every_figure_once_and_resumes(synth_figures, tmp_path, spy_trainers, monkeypatch):
    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1"])
    records = synth_figures.records
    results = run_cv(config, synth_figures, tmp_path / "cv", scheme="lodo", progress=False,
                     n_bootstrap=50, log=lambda _m: None)
    domains = sorted({r.domain for r in records})
    assert [f["name"] for f in results["folds"]] and len(results["folds"]) == len(domains)
    # The held-out domain never reaches training, validation (epoch choice) or the threshold.
    for (train_idx, val_idx), fold in zip(spy_trainers, results["folds"]):
        used = {records[i].domain for i in np.concatenate([train_idx, val_idx])}
        held_out = {records[i].domain for i in range(len(records))} - used
        assert len(held_out) == 1
        assert held_out == {fold["name"]} or fold["name"].endswith(next(iter(held_out)))
        assert not {records[i].group for i in train_idx} & {records[i].group for i in val_idx}
    rows = json.loads(json.dumps(results))  # results are JSON-serialisable
    assert rows["summary"]["n_figures"] == len(records)
    preds = (tmp_path / "cv" / "predictions.csv").read_text().splitlines()
    assert len(preds) == len(records) + 1
    uids = [line.split(",")[0] for line in preds[1:]]
    assert len(set(uids)) == len(records)
    html = (tmp_path / "cv" / "report.html").read_text()
    assert html.count("<img") >= 5
    # The top says what the report shows, and the ROC AUC column shows the interval its header names.
    head = html.split("<section")[0]
    for part in ("dataset: ", f"backbone: {config.model.backbone}", "input size: ",
                 f"epochs: {config.optim.epochs}", f"seed(s): {config.seed}", "scheme: lodo"):
        assert part in head
    pooled_ci = rows["summary"]["pooled_ci"]
    assert pooled_ci["roc_auc"] is not None
    assert f"[{pooled_ci['roc_auc'][0]:.3f}, {pooled_ci['roc_auc'][1]:.3f}]" in html
    # Resume: finished folds are reused, no training happens again.
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("a finished fold was trained again"))
    again = run_cv(config, synth_figures, tmp_path / "cv", scheme="lodo", progress=False, n_bootstrap=50,
                   log=lambda _m: None)
    assert again["summary"]["pooled"]["balanced_accuracy"] == results["summary"]["pooled"]["balanced_accuracy"]
    # Another recipe run into the same folder is refused: the finished folds hold the first recipe's predictions.
    changed = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1", "optim.lr=0.5"])
    before = (tmp_path / "cv" / "results.json").read_text()
    with pytest.raises(ConfigError, match=r"was trained with other settings or other figures"):
        run_cv(changed, synth_figures, tmp_path / "cv", scheme="lodo", progress=False, log=lambda _m: None)
    assert (tmp_path / "cv" / "results.json").read_text() == before
    # A finished fold that cannot be checked (its resume state removed) is refused too, naming the folder.
    first = tmp_path / "cv" / "folds" / cv_module._slug(results["folds"][0]["name"])
    (first / "model" / "last_state.pt").unlink()
    with pytest.raises(ConfigError, match=rf"{first.name}: finished fold .* has no last_state.pt"):
        run_cv(config, synth_figures, tmp_path / "cv", scheme="lodo", progress=False, log=lambda _m: None)


@pytest.mark.slow
def test_tta_predictions_use_the_tta_threshold_and_reuse_trained_folds(synth_figures, tmp_path, monkeypatch):
    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1"])
    plain = run_cv(config, synth_figures, tmp_path / "cv", scheme="lodo", progress=False, report=False,
                   n_bootstrap=20, log=lambda _m: None)
    assert plain["tta"] is False
    # Asking for TTA afterwards predicts the held-out figures again with the trained fold models.
    monkeypatch.setattr(Trainer, "fit", lambda *a, **k: pytest.fail("a trained fold was trained again"))
    with_tta = run_cv(config, synth_figures, tmp_path / "cv", scheme="lodo", tta=True, progress=False,
                      report=False, n_bootstrap=20, log=lambda _m: None)
    for fold in with_tta["folds"]:
        meta = json.loads((tmp_path / "cv" / "folds" / cv_module._slug(fold["name"]) / "model" / "model.json")
                          .read_text())
        assert fold["threshold"] == pytest.approx(meta["threshold_tta"])
        rows = json.loads((tmp_path / "cv" / "folds" / cv_module._slug(fold["name"]) / "predictions.json")
                          .read_text())
        assert all(r["tta"] is True and r["decision"] == int(r["p_atypical"] >= meta["threshold_tta"])
                   for r in rows)
    assert with_tta["summary"]["n_figures"] == plain["summary"]["n_figures"]


def test_unknown_strategy_is_rejected(synth_figures, tmp_path):
    from mitotype.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy"):
        cv_module.run_ablation(load_config(overrides=TINY_OVERRIDES), synth_figures, tmp_path, strategies=["magic"])


@pytest.mark.slow
def test_ablation_tabulates_each_strategy_off(synth_figures, tmp_path):
    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1"])
    table = cv_module.run_ablation(config, synth_figures, tmp_path / "abl", strategies=["mixup"], scheme="kfold",
                                   k=2, progress=False, log=lambda _m: None)
    assert set(table["variants"]) == {"all", "no_mixup"}
    delta = table["variants"]["no_mixup"]["delta_vs_all"]
    assert delta["ci_low"] <= delta["delta"] <= delta["ci_high"]
    import yaml

    saved = yaml.safe_load((tmp_path / "abl" / "no_mixup" / "folds" / "fold0" / "model" / "config.yaml").read_text())
    assert saved["strategies"]["mixup"]["enabled"] is False
    assert (tmp_path / "abl" / "ablation.html").is_file()


def test_evaluate_command_scores_a_model(synth_dir, tmp_path, capsys):
    from mitotype.cli.main import main
    from tests.conftest import make_model_dir

    model = make_model_dir(tmp_path / "model", threshold=0.5)
    code = main(["evaluate", "--model", str(model), "--data", str(synth_dir), "--format", "midog25",
                 "--domain", "scanner", "--device", "cpu", "--out", str(tmp_path / "eval")])
    assert code == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["summary"]["n_figures"] == 96
    assert len(results["summary"]["per_domain"]) == 4
    assert "mean ± sd over domains" in capsys.readouterr().out
    assert (tmp_path / "eval" / "report.html").read_text().count("<img") >= 5


def test_select_folds_runs_named_folds_in_the_given_order():
    from types import SimpleNamespace

    from mitotype.experiments.cv import select_folds

    folds = [SimpleNamespace(name=f"lodo-{d}") for d in ("Aperio CS2", "Hamamatsu XR", "TUPAC16")]
    assert select_folds(folds, None) == folds
    assert [f.name for f in select_folds(folds, ["TUPAC16", "lodo-Aperio CS2"])] == ["lodo-TUPAC16",
                                                                                     "lodo-Aperio CS2"]
    with pytest.raises(ConfigError, match=r"unknown fold.*TUPAC17"):
        select_folds(folds, ["TUPAC17"])
    # the same fold by its name and by its domain would count its figures twice
    with pytest.raises(ConfigError, match=r"'lodo-TUPAC16'\] given more than once"):
        select_folds(folds, ["TUPAC16", "lodo-TUPAC16"])


def test_domains_that_would_share_a_fold_folder_are_refused_before_anything_is_written(synth_figures, tmp_path,
                                                                                      monkeypatch):
    """``X Y`` and ``X/Y`` both map to ``folds/lodo-X-Y``: the second would reuse the first one's predictions."""
    from types import SimpleNamespace

    folds = [SimpleNamespace(name=f"lodo-{d}", train_idx=[], test_idx=[]) for d in ("X Y", "X/Y", "Z")]
    monkeypatch.setattr(cv_module, "make_folds", lambda *a, **k: folds)
    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1"])
    with pytest.raises(ConfigError, match=r"'lodo-X Y', 'lodo-X/Y'\] would share the folder folds/lodo-X-Y"):
        run_cv(config, synth_figures, tmp_path / "cv", only=["Z"])
    assert not (tmp_path / "cv").exists()
    cv_module.check_fold_folders(folds[1:])  # apart, no clash
