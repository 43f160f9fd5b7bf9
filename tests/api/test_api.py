"""The public Python API: the same real figures in every form a program holds them give the same p as
``mitotype predict``, and figures it cannot use are one-line errors that name the problem."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mitotype
from mitotype.errors import DataError, MitotypeError

N_FIGURES = 50


@pytest.fixture(scope="module")
def fifty(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 real AMi-Br patches (25 normal, 25 atypical) in one folder without labels."""
    folder = tmp_path_factory.mktemp("fifty")
    for kind in ("normal", "atypical"):
        for png in sorted((shared_data / "amibr" / "patches" / kind).glob("*.png"))[: N_FIGURES // 2]:
            shutil.copy(png, folder / png.name)
    return folder


@pytest.fixture(scope="module")
def classifier() -> mitotype.Classifier:
    return mitotype.load(device="cpu")


def _cli_rows(folder: Path, out: Path, *extra: str) -> list[dict[str, str]]:
    from mitotype.cli.main import main

    assert main(["predict", str(folder), "--out", str(out), "--device", "cpu", *extra]) == 0
    return list(csv.DictReader(out.open()))


@pytest.mark.shared
@pytest.mark.slow
def test_arrays_images_paths_and_a_folder_give_the_p_of_mitotype_predict(fifty: Path, classifier, tmp_path: Path,
                                                                         capsys) -> None:
    files = sorted(fifty.glob("*.png"))
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    by_folder = classifier.predict(fifty)
    assert by_folder.ids == [f.name for f in files] and len(by_folder) == N_FIGURES
    forms = {
        "batch": arrays,
        "list of arrays": list(arrays),
        "PIL images": [Image.open(f) for f in files],
        "path strings": [str(f) for f in files],
        "Path objects": files,
        "mixed": [arrays[:10], *[Image.open(f) for f in files[10:20]], *files[20:]],
    }
    for name, figures in forms.items():
        got = classifier.predict(figures)
        np.testing.assert_array_equal(got.p_atypical, by_folder.p_atypical, err_msg=name)
        np.testing.assert_array_equal(got.atypical, by_folder.atypical, err_msg=name)
        assert got.threshold == by_folder.threshold, name
    assert classifier.predict(forms["path strings"]).ids == by_folder.ids
    assert classifier.predict(arrays).ids == [str(i) for i in range(N_FIGURES)]
    capsys.readouterr()
    cli = _cli_rows(fifty, tmp_path / "p.csv")
    assert [r["id"] for r in cli] == by_folder.ids
    assert [float(r["p_atypical"]) for r in cli] == by_folder.p_atypical.tolist()  # the same numbers, not close
    assert cli == [{k: str(v) for k, v in row.items()} for row in by_folder.rows()]
    assert 0 < by_folder.atypical.sum() < N_FIGURES  # the test would not notice a constant answer otherwise


@pytest.mark.shared
@pytest.mark.slow
def test_tta_and_a_given_threshold_match_the_command_line(fifty: Path, classifier, tmp_path: Path) -> None:
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(fifty.glob("*.png"))])
    got = classifier.predict(arrays, tta=True, batch_size=128)
    assert got.tta and got.threshold == classifier.threshold(tta=True) != classifier.threshold(tta=False)
    cli = _cli_rows(fifty, tmp_path / "tta.csv", "--tta", "--batch-size", "128")
    assert [float(r["p_atypical"]) for r in cli] == got.p_atypical.tolist()
    assert {float(r["threshold"]) for r in cli} == {got.threshold}
    fixed = classifier.predict(arrays, threshold=0.9)
    assert fixed.threshold == 0.9 and fixed.atypical.tolist() == (fixed.p_atypical >= 0.9).tolist()


def test_any_size_goes_through_the_size_policy_as_the_readers_do(classifier, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (150, 140, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    from_file = classifier.predict(tmp_path / "big.png")
    assert from_file.ids == ["big.png"]
    centre = big[11:139, 6:134]  # the reader's centre crop of a 140 x 150 patch
    assert classifier.predict(big).p_atypical.tolist() == from_file.p_atypical.tolist()
    assert classifier.predict(centre).p_atypical.tolist() == from_file.p_atypical.tolist()
    grey = Image.fromarray(big[..., 0])
    assert "converted to RGB" in classifier.predict([grey]).notes[0]
    with pytest.raises(DataError, match=r"figures\[0\]: patch is 140x150, expected 128x128"):
        classifier.predict([big], size_policy="reject")


@pytest.mark.parametrize(("figures", "problem"), [
    (np.zeros((4, 128, 128, 3), np.float32), r"^figures: pixels must be uint8 \(0-255\), got a float32 array"),
    (np.zeros((128, 128), np.uint8), r"^figures: a 2-D array \(128, 128\) is not an RGB figure"),
    (np.zeros((2, 128, 128, 4), np.uint8), r"^figures: expected RGB figures as \(H, W, 3\) or \(N, H, W, 3\)"),
    ([], r"^figures: the list is empty; give at least one figure$"),
    (np.zeros((0, 128, 128, 3), np.uint8), r"^figures: no figures given"),
    ([np.zeros((128, 128, 3), np.uint8), 3.5], r"^figures\[1\]: cannot classify a float"),
])
def test_figures_it_cannot_use_are_one_line_errors(classifier, figures, problem: str, capsys) -> None:
    with pytest.raises(DataError, match=problem) as caught:
        classifier.predict(figures)
    assert "\n" not in str(caught.value)
    assert capsys.readouterr() == ("", "")


def test_a_missing_path_is_named(classifier, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere" / "fig.png"
    for figures in (missing, str(missing), [missing]):
        with pytest.raises(DataError, match=r"nowhere/fig\.png: no such file or folder$") as caught:
            classifier.predict(figures)
        assert "\n" not in str(caught.value)
    assert capsys.readouterr() == ("", "")


def test_bad_options_and_models_are_one_line_errors(classifier, tmp_path: Path) -> None:
    figure = np.zeros((128, 128, 3), np.uint8)
    for threshold in (1.5, float("nan"), True):
        with pytest.raises(MitotypeError, match="threshold must be a number in"):
            classifier.predict(figure, threshold=threshold)
    with pytest.raises(MitotypeError, match="batch size"):
        classifier.predict(figure, batch_size=0)
    with pytest.raises(MitotypeError, match="size policy"):
        classifier.predict(figure, size_policy="stretch")
    with pytest.raises(MitotypeError, match="no trained model found"):
        mitotype.load(tmp_path)
    with pytest.raises(MitotypeError, match="device 'gpu0' is not one this tool knows"):
        mitotype.load(device="gpu0")
    with pytest.raises(MitotypeError, match="unknown runtime 'tensorrt'"):
        mitotype.load(runtime="tensorrt")
    broken = tmp_path / "model.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(MitotypeError, match="not a readable model tarball"):
        mitotype.load(broken)


def test_the_result_holds_what_predict_writes(classifier, tmp_path: Path) -> None:
    labelled = tmp_path / "data"
    rng = np.random.default_rng(1)
    for kind in ("normal", "atypical"):
        (labelled / kind).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(labelled / kind / "a.png")
    batch = mitotype.read_figures(labelled, format="images")
    result = classifier.predict(batch)
    assert result.labels == [1, 0] and [r["label"] for r in result.rows()] == ["atypical", "normal"]
    assert result.atypical.dtype == bool and result.p_atypical.dtype == np.float64
    assert result.classes == ["atypical" if a else "normal" for a in result.atypical]
    assert set(result.rows()[0]) == {"id", "p_atypical", "class", "threshold", "label"}
    assert classifier.predict(np.zeros((128, 128, 3), np.uint8)).labels is None
    assert classifier.engine == "onnx" and classifier.models[0].name == "amibr-effnet-lite0-224"
    assert "amibr-effnet-lite0-224" in repr(classifier)


def test_to_pandas_has_the_columns_of_the_csv(classifier) -> None:
    pandas = pytest.importorskip("pandas")
    frame = classifier.predict(np.zeros((3, 128, 128, 3), np.uint8)).to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["id", "p_atypical", "class", "threshold"] and len(frame) == 3


def test_to_pandas_without_pandas_says_what_to_install(classifier, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MitotypeError, match=r"^Predictions.to_pandas needs pandas: pip install pandas$"):
        classifier.predict(np.zeros((128, 128, 3), np.uint8)).to_pandas()


def test_the_shipped_model_by_name_and_the_top_level_names() -> None:
    assert mitotype.load("amibr-effnet-lite0-224", device="cpu").models == mitotype.load(device="cpu").models
    for name in mitotype.__all__:
        assert getattr(mitotype, name) is not None
    assert mitotype.load.__doc__ and mitotype.Classifier.predict.__doc__
    with pytest.raises(AttributeError):
        _ = mitotype.not_a_name


def test_an_empty_batch_of_any_size_is_one_line(classifier) -> None:
    """(0, 100, 100, 3): no figures, but not 128 x 128 either; it was a bare ValueError from numpy (outside probe)."""
    for empty in (np.zeros((0, 100, 100, 3), np.uint8), [np.zeros((0, 60, 60, 3), np.uint8)]):
        with pytest.raises(DataError, match=r"^figures: no figures given"):
            classifier.predict(empty)
    one = classifier.predict([np.zeros((0, 60, 60, 3), np.uint8), np.zeros((128, 128, 3), np.uint8)])
    assert len(one) == 1 and one.ids == ["0"]


def test_numpy_scalars_are_numbers(classifier) -> None:
    """A threshold or prevalence computed in numpy (np.float32) and a batch size from an array's shape (np.int64)
    were refused as 'not a number' (outside probe)."""
    figures = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    plain = classifier.predict(figures, threshold=0.3, prevalence=0.1, batch_size=2)
    numpy = classifier.predict(figures, threshold=np.float32(0.3), prevalence=np.float32(0.1), batch_size=np.int64(2))
    assert numpy.threshold == pytest.approx(0.3) and numpy.prevalence == pytest.approx(0.1)
    assert np.allclose(numpy.p_atypical, plain.p_atypical, atol=1e-6)
    assert isinstance(numpy.threshold, float) and isinstance(numpy.prevalence, float)
