from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from datafactories import patch_array, truncate, write_png
from PIL import Image

from mitotype.data.patches import (
    check_image,
    crop_centered,
    decode_patch_file,
    decode_patches,
    fit_to_size,
    load_patch,
    pil_to_rgb,
    read_crops,
)
from mitotype.data.records import FigureRecord
from mitotype.errors import DataError


def record(image: Path, x: int | None = None, y: int | None = None) -> FigureRecord:
    return FigureRecord(uid=image.name, image=image, label=0, group="g", dataset="t", x=x, y=y)


def test_rgb_patch_round_trips(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", seed=3)
    arr = load_patch(record(path))
    assert arr.dtype == np.uint8 and arr.shape == (128, 128, 3)
    assert np.array_equal(arr, patch_array(3))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "I;16", "CMYK"])
def test_modes_convert_to_rgb_with_a_note(mode: str) -> None:
    image = Image.fromarray(patch_array(1)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    arr, notes = pil_to_rgb(image)
    assert arr.shape == (128, 128, 3) and arr.dtype == np.uint8
    assert [k for k, _ in notes] == ["converted-mode"]
    if mode in ("L", "I;16"):
        assert np.array_equal(arr[..., 0], arr[..., 2])
        gray = np.asarray(Image.fromarray(patch_array(1)).convert("L"))
        assert np.abs(arr[..., 0].astype(int) - gray).max() <= 1


def test_transparent_pixels_become_black() -> None:
    rgba = np.dstack([patch_array(2), np.full((128, 128), 255, np.uint8)])
    rgba[:10, :, 3] = 0
    arr, notes = pil_to_rgb(Image.fromarray(rgba, "RGBA"))
    assert arr[:10].max() == 0 and np.array_equal(arr[10:], patch_array(2)[10:])
    assert "composited onto black" in notes[0][1]
    _, opaque = pil_to_rgb(Image.fromarray(patch_array(2)).convert("RGBA"))
    assert "fully opaque" in opaque[0][1]


def test_size_policies() -> None:
    big = patch_array(4, 160)
    out, notes = fit_to_size(big)
    assert np.array_equal(out, big[16:144, 16:144]) and "centre-cropped" in notes[0][1]
    small = patch_array(5, 100)
    out, notes = fit_to_size(small)
    assert np.array_equal(out[14:114, 14:114], small) and out[:14].max() == 0
    assert "black-padded" in notes[0][1]
    out, notes = fit_to_size(big, policy="resize")
    assert out.shape == (128, 128, 3) and "resized" in notes[0][1]
    with pytest.raises(Exception, match="expected 128x128"):
        fit_to_size(big, policy="reject")
    same, none = fit_to_size(patch_array(6))
    assert none == [] and np.array_equal(same, patch_array(6))


def test_crop_centered_pads_black_at_the_border() -> None:
    image = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(300, 200, 3).astype(np.uint8)
    inside = crop_centered(image, 100, 150)
    assert np.array_equal(inside, image[86:214, 36:164])
    corner = crop_centered(image, 10, 5)
    assert corner[:59].max() == 0 and corner[:, :54].max() == 0
    assert np.array_equal(corner[59:, 54:], image[0:69, 0:74])
    assert crop_centered(image, -500, -500).max() == 0


def test_crops_from_png_and_tiff_agree(tmp_path: Path) -> None:
    big = patch_array(7, 400)[:300]
    Image.fromarray(big).save(tmp_path / "slide.png")
    tifffile.imwrite(tmp_path / "slide.tif", big, photometric="rgb", compression="zlib")
    centres = [(200, 150), (3, 290)]
    png_crops, _ = read_crops(tmp_path / "slide.png", centres)
    tif_crops, _ = read_crops(tmp_path / "slide.tif", centres)
    for a, b, (x, y) in zip(png_crops, tif_crops, centres):
        assert np.array_equal(a, b)
        assert np.array_equal(a, crop_centered(big, x, y))
    assert np.array_equal(load_patch(record(tmp_path / "slide.tif", 200, 150)), png_crops[0])


def test_corrupt_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    cut = truncate(write_png(tmp_path / "cut.png", seed=1))
    for path in (garbage, cut):
        with pytest.raises(DataError, match=path.name):
            load_patch(record(path))
        result = check_image(path, full=True, crop=False)
        assert result.error is not None and result.error.kind == "corrupt-image"
    header_only = check_image(cut, full=False, crop=False)
    assert header_only.error is not None and "truncated" in header_only.error.message


def test_whole_slide_without_openslide_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mitotype.data.patches as patches

    monkeypatch.setattr(patches, "_openslide", lambda: None)  # as on a machine without it
    slide = tmp_path / "case.svs"
    slide.write_bytes(b"II*\x00")
    with pytest.raises(DataError, match="openslide"):
        load_patch(record(slide, 10, 10))


def test_bulk_decoder_matches_single_decoding(tmp_path: Path) -> None:
    records = [record(write_png(tmp_path / f"{i}.png", seed=i, size=128 if i % 3 else 140)) for i in range(9)]
    big = patch_array(99, 300)
    Image.fromarray(big).save(tmp_path / "slide.png")
    records += [record(tmp_path / "slide.png", 150, 150), record(tmp_path / "slide.png", 0, 299)]
    out = np.zeros((len(records), 128, 128, 3), np.uint8)
    decode_patches(records, out, workers=2)
    for i, r in enumerate(records):
        assert np.array_equal(out[i], load_patch(r))
    assert np.array_equal(out[3], decode_patch_file(records[3].image)[0])


def test_bulk_decoder_raises_naming_the_bad_file(tmp_path: Path) -> None:
    good = record(write_png(tmp_path / "good.png"))
    bad = record(truncate(write_png(tmp_path / "bad.png", seed=2)))
    out = np.zeros((2, 128, 128, 3), np.uint8)
    with pytest.raises(DataError, match=r"bad\.png"):
        decode_patches([good, bad], out)
