"""Reading challenge TIFF stacks: the real one, and every way a stack can be wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.errors import DataError
from mitotype.serving.stack import find_stack, read_stack

STACK_DIR = Path("midog25_t2_stack/input/images/stacked-histopathology-roi-cropouts")


def patches(n: int, size: int = 128, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (n, size, size, channels) if channels else (n, size, size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_pages(path: Path, pages: np.ndarray, **kwargs) -> Path:
    """One TIFF page per array in ``pages`` (as the challenge stacks are written)."""
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, **kwargs)
    return path


@pytest.mark.shared
def test_real_challenge_stack(shared_data: Path) -> None:
    folder = shared_data / STACK_DIR
    path = find_stack(folder)
    assert path.name == "stack_5.tiff"
    stack = read_stack(path)
    assert stack.shape == (16, 128, 128, 3) and stack.dtype == np.uint8
    assert stack.flags["C_CONTIGUOUS"]
    assert len({stack[i].tobytes() for i in range(16)}) == 16  # 16 distinct figures, page order kept
    assert stack.std() > 10  # real H&E content, not a blank decode


def test_round_trip_in_page_order(tmp_path: Path) -> None:
    data = patches(5)
    path = write_pages(tmp_path / "s.tif", data, photometric="rgb", compression="zlib")
    np.testing.assert_array_equal(read_stack(path), data)


def test_planar_rgb_is_accepted(tmp_path: Path) -> None:
    data = patches(2)
    path = write_pages(
        tmp_path / "planar.tif", np.moveaxis(data, -1, 1), photometric="rgb", planarconfig="separate"
    )
    np.testing.assert_array_equal(read_stack(path), data)


def test_page_limit_is_configurable(tmp_path: Path) -> None:
    path = write_pages(tmp_path / "big.tiff", patches(17), photometric="rgb")
    with pytest.raises(DataError, match="17 pages; at most 16"):
        read_stack(path)
    assert read_stack(path, max_pages=20).shape[0] == 17
    assert read_stack(path, max_pages=None).shape[0] == 17


def _assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert str(path) in message and "\n" not in message


def test_zero_pages(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 0))  # valid header, no image directory
    with pytest.raises(DataError, match="no pages") as exc:
        read_stack(path)
    _assert_one_line_naming(exc, path)


@pytest.mark.parametrize(
    ("name", "pages", "kwargs", "match"),
    [
        ("gray.tif", patches(2, channels=0), {"photometric": "minisblack"}, "grayscale"),
        ("rgba.tif", patches(2, channels=4), {"photometric": "rgb", "extrasamples": ["unassalpha"]}, "RGBA"),
        ("small.tif", patches(2, size=64), {"photometric": "rgb"}, "64x64 pixels; expected 128x128"),
        (
            "wide16.tif",
            np.zeros((1, 128, 128, 3), dtype=np.uint16),
            {"photometric": "rgb"},
            "uint16; expected 8-bit",
        ),
    ],
)
def test_wrong_page_format(tmp_path: Path, name: str, pages: np.ndarray, kwargs: dict, match: str) -> None:
    path = write_pages(tmp_path / name, pages, **kwargs)
    with pytest.raises(DataError, match=match) as exc:
        read_stack(path)
    _assert_one_line_naming(exc, path)


def test_corrupt_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a TIFF at all")
    with pytest.raises(DataError, match="not a readable TIFF") as exc:
        read_stack(junk)
    _assert_one_line_naming(exc, junk)

    good = write_pages(tmp_path / "good.tif", patches(4), photometric="rgb", compression="zlib")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError) as exc:
        read_stack(truncated)
    _assert_one_line_naming(exc, truncated)

    with pytest.raises(DataError, match="not found"):
        read_stack(tmp_path / "missing.tif")


def test_broken_page_chain_is_not_a_shorter_stack(tmp_path: Path) -> None:
    # Cut the file where page 2 begins: pages 0 and 1 stay decodable, but the chain points past the
    # end. tifffile only logs this and lists 2 pages; the output would silently be too short.
    good = write_pages(tmp_path / "good.tif", patches(4), photometric="rgb")
    with tifffile.TiffFile(good) as tif:
        cut = tif.pages[2].offset
        assert cut >= max(o + n for p in tif.pages[:2] for o, n in zip(p.dataoffsets, p.databytecounts))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(good.read_bytes()[:cut])
    with pytest.raises(DataError, match="damaged") as exc:
        read_stack(broken)
    _assert_one_line_naming(exc, broken)


def test_find_stack(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="input folder not found"):
        find_stack(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no \.tif/\.tiff stack") as exc:
        find_stack(tmp_path)
    assert str(tmp_path) in str(exc.value)
    (tmp_path / "._stack.tif").write_bytes(b"macOS resource fork")  # hidden: ignored
    (tmp_path / "stack_1.TIFF").write_bytes(b"x")
    assert find_stack(tmp_path).name == "stack_1.TIFF"
    (tmp_path / "stack_2.tif").write_bytes(b"x")
    with pytest.raises(DataError, match=r"exactly one .* found 2: stack_1\.TIFF, stack_2\.tif"):
        find_stack(tmp_path)


@pytest.mark.parametrize(("compression", "lossless"), [("tiff_lzw", True), ("jpeg", False)])
def test_lzw_and_jpeg_stacks_without_imagecodecs(tmp_path: Path, compression: str, lossless: bool) -> None:
    """tifffile needs imagecodecs for these; the base install decodes them with Pillow's libtiff instead."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pages = np.repeat(np.repeat(rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8), 8, axis=1), 8, axis=2)
    path = tmp_path / "stack.tif"
    images = [Image.fromarray(page) for page in pages]
    images[0].save(path, compression=compression, save_all=True, append_images=images[1:])
    got = read_stack(path)
    assert got.shape == (3, 128, 128, 3) and got.dtype == np.uint8
    error = np.abs(got.astype(int) - pages).mean()
    assert error == 0 if lossless else error < 8


def test_pillow_decodes_what_tifffile_would_with_imagecodecs(tmp_path: Path, monkeypatch) -> None:
    pages = np.random.default_rng(1).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, pages, photometric="rgb", compression="zlib")
    expected = read_stack(path)

    def needs_imagecodecs(self, *args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", needs_imagecodecs)
    np.testing.assert_array_equal(read_stack(path), expected)
    with tifffile.TiffWriter(tmp_path / "grey.tif") as tif:
        for page in pages[..., 0]:
            tif.write(page, photometric="minisblack", compression="zlib")
    with pytest.raises(DataError, match="page 0 is grayscale"):  # the same checks on Pillow's pages
        read_stack(tmp_path / "grey.tif")
