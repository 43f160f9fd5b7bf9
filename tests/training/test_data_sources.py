"""``train`` reads data the way ``predict`` does (the shared reader flags and their YAML keys), and trains on
several datasets at once (``--data A --data B``, ``data.sources``), each keeping its domains and slides."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mitotype.cli.main import build_parser, main
from mitotype.cli.train import config_from_args
from mitotype.data.store import PatchStore
from mitotype.errors import ConfigError
from mitotype.evaluation.splits import leave_one_domain_out, validation_split
from mitotype.training.config import DataSettings, DataSource, load_config, stable_dict, to_dict
from mitotype.training.inputs import load_data_figures
from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES
from tests.data.datafactories import midog25_rows, write_midog25

TRAIN = [o for o in TINY_OVERRIDES if not o.startswith("data.")] + ["optim.epochs=1", "data.val_fraction=0.25"]
"""The tiny configuration without its reader settings (each test says how its data is read)."""


def _sets(items: list[str]) -> list[str]:
    return [x for o in items for x in ("--set", o)]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def odd_csv(root: Path, n_slides: int = 8, per_slide: int = 4) -> Path:
    """A plain CSV whose columns no reader knows (``path_col``, ``cls``, ``slide_id``, ``scan``; labels
    ``AMF``/``NMF``), with tiny PNG patches beside it."""
    rng = np.random.default_rng(5)
    rows = []
    for s in range(n_slides):
        for j in range(per_slide):
            name = f"img/s{s}_{j}.png"
            (root / "img").mkdir(parents=True, exist_ok=True)
            colour = np.array([200, 120, 190] if j % 2 else [150, 90, 160], np.int16)
            pixels = np.clip(colour + rng.integers(-30, 30, (128, 128, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name)
            rows.append(f"{name},{'AMF' if j % 2 else 'NMF'},slide{s},{'Scan X' if s % 2 else 'Scan Y'}")
    path = root / "figures.csv"
    path.write_text("path_col,cls,slide_id,scan\n" + "\n".join(rows) + "\n")
    return path


CSV_FLAGS = ["--format", "csv", "--column", "image=path_col", "--column", "label=cls", "--column", "group=slide_id",
             "--column", "scanner=scan", "--label", "AMF=atypical", "--label", "NMF=normal", "--domain", "scanner"]
CSV_YAML = {"format": "csv", "columns": {"image": "path_col", "label": "cls", "group": "slide_id", "scanner": "scan"},
            "labels": {"AMF": "atypical", "NMF": "normal"},
            "domain": ["scanner"]}


# --------------------------------------------------------------------------- part 1: the reader flags


def test_train_reads_a_csv_through_the_column_and_label_flags(tmp_path, capsys):
    csv = odd_csv(tmp_path / "odd")
    out = tmp_path / "run"
    code = main(["train", "--data", str(csv), *CSV_FLAGS, *_sets([*TRAIN, f"data.cache_dir={tmp_path / 'cache'}"]),
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "32 figures" in capsys.readouterr().out
    saved = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert saved["columns"] == CSV_YAML["columns"] and saved["labels"]["AMF"] == "atypical"
    assert saved["format"] == "csv" and saved["sources"] == []
    assert (out / "model.safetensors").is_file()


def test_train_reads_the_same_csv_through_yaml(tmp_path, capsys):
    csv = odd_csv(tmp_path / "odd")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(csv), **CSV_YAML, "size_policy": "resize",
                                               "cache_dir": str(tmp_path / "cache")}}))
    code = main(["train", "--config", str(config), *_sets(TRAIN), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert saved["columns"] == CSV_YAML["columns"] and saved["size_policy"] == "resize"


def test_a_wrong_column_name_is_one_line_naming_the_file(tmp_path, capsys):
    csv = odd_csv(tmp_path / "odd", n_slides=2)
    flags = [f if f != "image=path_col" else "image=no_such_col" for f in CSV_FLAGS]
    code = main(["train", "--data", str(csv), *flags, *_sets([*TRAIN, f"data.cache_dir={tmp_path / 'cache'}"]),
                 "--out", str(tmp_path / "run"), "--no-progress"])
    line = _error(capsys)
    assert code == 2
    assert str(csv) in line and "no_such_col" in line
    assert not (tmp_path / "run").exists()


def test_flags_override_the_yaml_and_unset_flags_leave_it(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": "/a", "format": "csv", "on_error": "skip",
                                               "columns": {"image": "x"}, "meta_csv": "/m.csv"}}))
    args = build_parser().parse_args(["train", "--config", str(config), "--out", str(tmp_path / "o"),
                                      "--column", "image=y", "--column", "label=z", "--size-policy", "reject"])
    d = config_from_args(args).data
    assert (d.path, d.format, d.on_error, d.meta_csv) == ("/a", "csv", "skip", "/m.csv")  # left alone
    assert d.columns == {"image": "y", "label": "z"} and d.size_policy == "reject"  # overridden
    args = build_parser().parse_args(["train", "--config", str(config), "--out", str(tmp_path / "o"),
                                      "--data", "/b", "--data", "/c d:e", "--format", "auto"])
    d = config_from_args(args).data
    assert d.path == "" and [s.path for s in d.sources] == ["/b", "/c d:e"] and d.format == "auto"


# --------------------------------------------------------------------------- part 2: the settings


def test_sources_inherit_data_options_and_get_unique_names():
    d = DataSettings(domain=["scanner"], on_error="skip", sources=[
        DataSource(path="/x/amibr"), DataSource(path="/y/amibr", domain=["tumor"]),
        DataSource(path="/z/labels.csv", name="mine", format="csv", columns={"image": "f", "label": "l"}),
        DataSource(path="/w/mine.csv")])
    a, b, c, e = d.resolved_sources()
    assert (a.name, b.name, c.name, e.name) == ("amibr", "amibr-2", "mine", "mine-2")
    assert a.domain == ["scanner"] and b.domain == ["tumor"] and a.on_error == c.on_error == "skip"
    assert a.format == "auto" and c.format == "csv"
    assert d.source_reader_options(c)["columns"] == {"image": "f", "label": "l"}
    assert "columns" not in d.source_reader_options(a)
    assert d.description() == "/x/amibr + /y/amibr + /z/labels.csv + /w/mine.csv"


@pytest.mark.parametrize("data, message", [
    ({"path": "/a", "sources": [{"path": "/b"}]}, "data.path and data.sources are both set"),
    ({"sources": [{"format": "csv"}]}, "every dataset needs a path"),
    ({"sources": [{"path": "/b", "name": "a:b"}]}, "must not contain ':'"),
    ({"sources": [{"path": "/b", "colums": {}}]}, "did you mean 'columns'"),
    ({"sources": [{"path": "/b", "name": "x"}, {"path": "/c", "name": "x"}]}, r"\['x'\] are given to more"),
    ({"sources": [{"path": "/b", "on_error": "maybe"}]}, r"data.sources\[0\].on_error"),
    ({"size_policy": "stretch"}, "data.size_policy"),
    ({"sources": [{"path": "/b"}, {"path": "/a/../b/"}]}, r"/a/../b/ is given twice \(also as /b\) with the same"),
])
def test_bad_data_settings_are_refused_with_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"data": data})


def test_one_dataset_twice_is_allowed_only_with_other_reader_options():
    """Two parts of one label file (``include``) are two datasets; the same file read the same way is one."""
    config = load_config({"data": {"sources": [{"path": "/b", "include": {"scanner": "A"}},
                                               {"path": "/b", "include": {"scanner": "B"}}]}})
    assert [s.name for s in config.data.resolved_sources()] == ["b", "b-2"]


def test_a_domain_field_one_dataset_lacks_names_that_dataset(tmp_path):
    from mitotype.data.readers import read_dataset
    from tests.data.datafactories import write_csv, write_png

    write_png(tmp_path / "a.png", seed=1)
    table = write_csv(tmp_path / "t.csv", ["img", "cls", "site"], [["a.png", "normal", "x"]])
    with pytest.raises(ConfigError, match=rf"^{table}: domain field\(s\) \['tumor'\] not present in this dataset"):
        read_dataset(table, fmt="csv", columns={"image": "img", "label": "cls", "scanner": "site"}, domain=["tumor"])


def test_configs_and_fingerprints_of_earlier_runs_are_unchanged():
    old = {"path": "/d", "format": "midog25", "domain": ["scanner"], "images_dir": None, "on_error": "fail",
           "include": {}, "cache_dir": None, "val_fraction": 0.2}
    config = load_config({"data": old})
    assert stable_dict(config)["data"] == old  # what run_fingerprint hashes: as before these keys existed
    assert set(to_dict(config)["data"]) > set(old)
    config = load_config({"data": {**old, "columns": {"image": "f"}}})
    assert stable_dict(config)["data"]["columns"] == {"image": "f"}


# --------------------------------------------------------------------------- part 2: several datasets


def test_two_datasets_train_from_the_cli(synth_dir, tmp_path, capsys):
    from mitotype.data.synth import write_synthetic

    other = write_synthetic(tmp_path / "other", n_per_domain=12, seed=9)
    out = tmp_path / "run"
    code = main(["train", "--data", str(synth_dir), "--data", str(other), "--format", "midog25", "--domain", "scanner",
                 *_sets([*TRAIN, f"data.cache_dir={tmp_path / 'cache'}"]), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"2 datasets: {synth_dir.name} 96, other 48" in printed.out
    saved = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert saved["path"] == "" and [s["path"] for s in saved["sources"]] == [str(synth_dir), str(other)]
    meta = json.loads((out / "model.json").read_text())
    assert {d.split(":")[0] for d in meta["domains"]} == {synth_dir.name, "other"}


def test_mixed_votes_and_hard_labels_become_the_right_targets(synth_dir, tmp_path):
    """Soft labels blend the votes where a dataset has them; a dataset without votes keeps hard targets."""
    csv = odd_csv(tmp_path / "odd")
    data = DataSettings(cache_dir=str(tmp_path / "cache"), sources=[
        DataSource(path=str(synth_dir), name="synth", format="midog25", domain=["scanner"]),
        DataSource(path=str(csv), name="odd", **CSV_YAML)])
    figures = load_data_figures(data)
    records = figures.records
    assert len(records) == 96 + 32
    config = load_config(overrides=TRAIN)
    train_idx, val_idx = validation_split(records, np.arange(len(records)), fraction=0.25, seed=0)
    trainer = Trainer(config, records, figures.images, train_idx, val_idx, tmp_path / "run")
    trainer.prepare()
    targets, labels = trainer.targets, np.array([r.label for r in records])
    odd = np.array([r.dataset == "odd" for r in records])
    assert all(not r.votes for r in records if r.dataset == "odd")
    np.testing.assert_array_equal(targets[odd], labels[odd])  # no votes: the hard label, not 0.5 or NaN
    split = np.array([0 < r.soft_label < 1 for r in records])
    assert split.any() and np.all((targets[split] > 0) & (targets[split] < 1))
    assert np.isfinite(targets).all()


def _midog25_like(root: Path, n: int = 40) -> Path:
    """A MIDOG 2025-layout dataset whose scanners share names with AMi-Br's (``Aperio CS2``), on slides
    named like AMi-Br's MIDOG 2021 slides (``002.tiff``)."""
    rows = midog25_rows(n)
    for i, row in enumerate(rows):
        row["Scanner"] = "Aperio CS2" if i % 2 else "Hamamatsu XR"
        row["filename"] = f"{2 + i % 8:03d}.tiff"
        atypical = i % 3 == 0
        row["expert1"] = row["expert2"] = row["majority"] = "AMF" if atypical else "NMF"
        row["expert3"] = "NMF" if i % 6 == 0 else ""  # some split votes
    write_midog25(root, rows)
    return root


@pytest.mark.shared
def test_amibr_and_a_midog25_layout_dataset_together(shared_data, tmp_path):
    m25 = _midog25_like(tmp_path / "m25")
    cache = tmp_path / "cache"
    data = DataSettings(cache_dir=str(cache), sources=[
        DataSource(path=str(shared_data / "amibr")), DataSource(path=str(m25), name="midog25", domain=["scanner"])])
    figures = load_data_figures(data)
    records = figures.records
    assert len(records) == 3720 + 40 == len(figures.images)
    assert {r.domain for r in records} == {"amibr:Aperio CS2", "amibr:Hamamatsu S360", "amibr:Hamamatsu XR",
                                           "amibr:TUPAC16", "midog25:Aperio CS2", "midog25:Hamamatsu XR"}
    groups = {name: {r.group for r in records if r.dataset == name} for name in ("amibr", "midog25")}
    assert groups["amibr"] and groups["midog25"] and not groups["amibr"] & groups["midog25"]
    assert len({r.uid for r in records}) == len(records)
    amibr = [r for r in records if r.dataset == "amibr"]
    assert all(len(r.votes) == 3 for r in amibr) and any(0 < r.soft_label < 1 for r in amibr)
    # leave-one-domain-out holds out each dataset-domain on its own
    folds = leave_one_domain_out(records)
    assert sorted(f.held_out_domain for f in folds) == sorted({r.domain for r in records})
    assert all(len(f.dropped_idx) == 0 for f in folds)
    # the patch store of the combination is found again, pixels row for row
    again = PatchStore.open_or_build(records, cache_dir=cache)
    assert not again.built
    first = next(i for i, r in enumerate(records) if r.dataset == "midog25")
    png = np.asarray(Image.open(records[first].image).convert("RGB"))
    assert hashlib.sha256(png.tobytes()).digest() == hashlib.sha256(figures.images[first].tobytes()).digest()

    # a tiny run on a few AMi-Br slides plus the MIDOG 2025-layout figures
    slides = sorted(groups["amibr"])[:12]
    subset = np.array([i for i, r in enumerate(records) if r.dataset == "midog25" or r.group in slides])
    train_idx, val_idx = validation_split(records, subset, fraction=0.25, seed=0)
    config = load_config(overrides=[*TRAIN, "optim.batch_size=32"])
    trainer = Trainer(config, records, figures.images, train_idx, val_idx, tmp_path / "run")
    trainer.prepare()
    assert {n.split(":")[0] for n in trainer.domain_names} == {"amibr", "midog25"}
    result = trainer.fit()
    assert (tmp_path / "run" / "model.safetensors").is_file() and 0 < result.threshold < 1


def test_cv_holds_out_each_dataset_domain(tmp_path, capsys):
    """Two datasets scanned on a scanner of the same name: leave-one-domain-out holds out each on its own."""
    from mitotype.data.synth import write_synthetic

    a = write_synthetic(tmp_path / "a", n_per_domain=32, domains=1, seed=1)
    b = write_synthetic(tmp_path / "b", n_per_domain=32, domains=1, seed=2)
    out = tmp_path / "cv"
    code = main(["cv", "--data", str(a), "--data", str(b), "--format", "midog25", "--domain", "scanner",
                 *_sets([*TRAIN, f"data.cache_dir={tmp_path / 'cache'}"]), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]["per_domain"]) == {"a:Synth Scanner A", "b:Synth Scanner A"}
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["lodo-a-Synth-Scanner-A", "lodo-b-Synth-Scanner-A"]


def test_holdout_trains_on_two_datasets_with_the_reader_flags(synth_dir, tmp_path, capsys):
    from mitotype.data.synth import write_synthetic

    other = write_synthetic(tmp_path / "other", n_per_domain=16, seed=4)
    argv = ["holdout", "--data", str(synth_dir), "--data", str(other), "--format", "midog25", "--domain", "scanner",
            "--out", str(tmp_path / "work"), "--split-column", "scanner", "--train-values", "Synth Scanner A",
            "Synth Scanner B", "Synth Scanner C", "--test-values", "Synth Scanner D", "--recipes", "plain",
            "--seeds", "0", "--cache", str(tmp_path / "cache"), *_sets([*TRAIN, "model.input_size=56"])]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "work" / "holdout.json").read_text())
    assert results["data"] == f"{synth_dir} + {other}"
    assert results["runs"][0]["n_test"] == 24 + 16


def test_the_same_figures_in_two_datasets_are_reported(synth_dir, tmp_path):
    import shutil

    from mitotype.training.inputs import duplicates_note

    copy = shutil.copytree(synth_dir, tmp_path / "copy" / synth_dir.name)  # the same figures in another folder
    data = DataSettings(format="midog25", cache_dir=str(tmp_path / "cache"),
                        sources=[DataSource(path=str(synth_dir)), DataSource(path=str(copy))])
    figures = load_data_figures(data)
    assert sorted({r.dataset for r in figures.records}) == [synth_dir.name, f"{synth_dir.name}-2"]
    note = duplicates_note(figures)
    assert note and note.startswith("96 figure(s) have the same pixels as a figure of another dataset")
    single = load_data_figures(DataSettings(path=str(synth_dir), format="midog25", cache_dir=str(tmp_path / "cache")))
    assert duplicates_note(single) is None and single.records[0].uid == "1.png"  # one dataset: ids as before


def test_the_size_policy_reaches_the_patch_store(tmp_path):
    """``--size-policy`` (predict, evaluate, train) decides how the store fits a 64x64 patch, as the reader did."""
    from mitotype.training.inputs import load_figures

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "f.csv").write_text("image,label\na.png,NMF\nb.png,AMF\n")
    corner = {}
    for policy in ("center-crop", "resize"):
        figures = load_figures(tmp_path / "f.csv", fmt="csv", cache_dir=tmp_path / "cache",
                               reader_options={"size_policy": policy})
        corner[policy] = int(figures.images[0, 0, 0, 0])
    assert corner == {"center-crop": 0, "resize": 200}  # black padding vs the patch scaled up
