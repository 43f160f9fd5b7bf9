"""The synthetic multi-domain dataset: deterministic, readable by the midog25 reader, with domain shift."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mitotype.data.readers import read_dataset
from mitotype.data.store import PatchStore
from mitotype.data.synth import LABEL_FILE, _Canvas, domain_styles, render, write_synthetic
from mitotype.errors import ConfigError


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    start = time.perf_counter()
    out = write_synthetic(tmp_path_factory.mktemp("synth") / "ds", n_per_domain=60, seed=3)
    assert time.perf_counter() - start < 10  # 240 figures: about a second on 2 cores
    return out


def test_deterministic_by_seed(synth: Path, tmp_path: Path) -> None:
    again = write_synthetic(tmp_path / "again", n_per_domain=60, seed=3)
    assert digest(again) == digest(synth)
    other = write_synthetic(tmp_path / "other", n_per_domain=60, seed=4)
    assert digest(other) != digest(synth)


def test_read_by_the_midog25_reader(synth: Path) -> None:
    result = read_dataset(synth)
    assert result.fmt == "midog25" and result.problems == []
    records = result.records
    assert len(records) == 240
    assert Counter(r.domain for r in records) == {s.tumor: 60 for s in domain_styles(4)}
    assert len({r.meta["scanner"] for r in records}) == 4
    atypical = sum(r.label for r in records) / len(records)
    assert 0.15 < atypical < 0.35
    assert len({r.group for r in records}) == 8  # 2 slides per domain at 60 figures
    by_scanner = read_dataset(synth, domain=["scanner"], check="none")
    assert len({r.domain for r in by_scanner.records}) == 4


def test_votes_disagree_on_borderline_figures(synth: Path) -> None:
    records = read_dataset(synth, check="none").records
    latent = {f["image_id"]: f for f in json.loads((synth / "synthetic.json").read_text())["figures"]}
    split = [r for r in records if r.votes_cast == 3]
    assert split, "some figures need the third expert"
    assert all(r.votes[0] != r.votes[1] for r in split)
    assert all(r.votes[2] is None for r in records if r.votes_cast == 2)
    t_split = np.mean([abs(latent[r.uid]["t"] - 0.5) for r in split])
    t_clear = np.mean([abs(latent[r.uid]["t"] - 0.5) for r in records if r.votes_cast == 2])
    assert t_split < t_clear  # disagreement happens near the decision border
    t_by_label = {k: np.mean([latent[r.uid]["t"] for r in records if r.label == k]) for k in (0, 1)}
    assert t_by_label[1] - t_by_label[0] > 0.3
    assert any("+" in latent[r.uid]["figure"] for r in records if r.label == 1)  # abnormal morphology


def test_purple_figures_on_pink_and_domain_shift(synth: Path, tmp_path: Path) -> None:
    records = read_dataset(synth, check="none").records
    images = PatchStore.open_or_build(records, tmp_path / "cache").images.astype(np.float32)
    n = len(images)
    border = np.concatenate([images[:, :8].reshape(n, -1, 3), images[:, -8:].reshape(n, -1, 3)], 1)
    background = np.median(border, axis=1)
    assert np.all(background[:, 0] > background[:, 1]) and np.all(background[:, 2] > background[:, 1])  # pink
    centre = images[:, 44:84, 44:84].reshape(len(images), -1, 3)
    darkest = np.array([c[np.argsort(c.sum(1))[:40]].mean(0) for c in centre])
    assert np.all(darkest[:, 2] > darkest[:, 1])  # purple-blue chromatin
    assert np.all(darkest.sum(1) < background.sum(1) - 150)  # much darker than the background
    domains = [r.domain for r in records]
    means = {d: background[[i for i, x in enumerate(domains) if x == d]].mean(0) for d in set(domains)}
    values = list(means.values())
    gaps = [np.abs(a - b).max() for i, a in enumerate(values) for b in values[i + 1 :]]
    assert min(gaps) > 8  # each pair of domains differs in stain by more than a few grey levels


def test_atypicality_changes_the_figure() -> None:
    canvas = _Canvas(128, np.random.default_rng(0))
    style = domain_styles(1)[0]
    low = render(canvas, np.random.default_rng(5), style, 0.05)
    high = render(canvas, np.random.default_rng(5), style, 0.95)
    assert "+" not in low[1] and "+" in high[1]
    assert not np.array_equal(low[0], high[0])


def test_more_domains_and_bad_arguments(tmp_path: Path) -> None:
    out = write_synthetic(tmp_path / "six", n_per_domain=3, domains=6, seed=1)
    assert len({r.domain for r in read_dataset(out / LABEL_FILE).records}) == 6
    with pytest.raises(ConfigError):
        write_synthetic(tmp_path / "bad", n_per_domain=0)
    with pytest.raises(ConfigError):
        write_synthetic(tmp_path / "bad", atypical_fraction=1.5)
