"""Safe image loading: whatever a phone sends, upright 8-bit RGB or one clear error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from steps.core.errors import InputError
from steps.core.images import MAX_PIXELS, encode_png, load_page, load_photo, photo_ext
from tests.helpers import DEMO_PHOTO, png_bytes


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(DEMO_PHOTO).convert("RGB")


def test_jpeg(photo):
    array = load_photo(DEMO_PHOTO.read_bytes())
    assert array.shape == (photo.height, photo.width, 3) and array.dtype == np.uint8


def test_exif_rotation_is_applied(photo):
    wide = photo.resize((400, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    array = load_photo(png_bytes(wide, format="JPEG", exif=exif.tobytes()))
    assert array.shape[:2] == (400, 300)


def test_webp_and_heic(photo):
    from pillow_heif import register_heif_opener

    register_heif_opener()
    for fmt, ext in (("WEBP", "webp"), ("HEIF", "heic")):
        data = png_bytes(photo, format=fmt, quality=90)
        assert photo_ext(data) == ext
        assert load_photo(data).shape == (photo.height, photo.width, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_modes_become_rgb(photo, mode):
    if mode == "I;16":
        src = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
        assert src.mode.startswith("I;16")
    else:
        src = photo.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    array = load_photo(png_bytes(src, format=fmt))
    assert array.shape == (photo.height, photo.width, 3) and array.dtype == np.uint8
    assert 40 < array.mean() < 220  # not black, not white: the scale was kept


@pytest.mark.parametrize("data,reason", [
    (b"hello, this is not an image", "bad_image"),
    (b"%PDF-1.4 fake", "bad_image"),
])
def test_not_an_image(data, reason):
    with pytest.raises(InputError) as e:
        load_photo(data)
    assert e.value.reason == reason


def test_truncated_jpeg():
    data = DEMO_PHOTO.read_bytes()
    with pytest.raises(InputError) as e:
        load_photo(data[: len(data) // 2])
    assert "truncated" in e.value.message


def test_tiny_image():
    with pytest.raises(InputError) as e:
        load_photo(png_bytes(Image.new("RGB", (1, 1))))
    assert e.value.reason == "photo_too_small"


def test_decompression_bomb():
    side = int((MAX_PIXELS * 1.2) ** 0.5)
    bomb = png_bytes(Image.new("1", (side, side)))  # a few KB on disk, 60 MP when decoded
    assert len(bomb) < 200_000
    with pytest.raises(InputError) as e:
        load_photo(bomb)
    assert e.value.reason == "image_too_large"


def test_gif_is_refused():
    with pytest.raises(InputError) as e:
        load_photo(png_bytes(Image.new("RGB", (100, 100)), format="GIF"))
    assert "GIF" in e.value.message


def test_load_page_resizes_and_png_carries_dpi(photo):
    page = load_page(png_bytes(photo), (300, 200))
    assert page.shape == (200, 300, 3) and page.dtype == np.uint8
    again = Image.open(io.BytesIO(encode_png(page, 300)))
    assert again.size == (300, 200)
    assert tuple(round(v) for v in again.info["dpi"]) == (300, 300)
    assert np.array_equal(np.asarray(again), np.asarray(page))  # lossless


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_print_png_is_lossless_valid_and_filtered_up(photo, mode):
    page = photo.convert(mode)
    data = encode_png(page, 150)
    with Image.open(io.BytesIO(data)) as checked:
        checked.verify()  # every chunk's CRC, the pHYs we insert included
    again = Image.open(io.BytesIO(data))
    expected = page if mode in ("RGB", "L") else page.convert("RGB")
    assert again.mode == expected.mode and np.array_equal(np.asarray(again), np.asarray(expected))
    assert tuple(round(v) for v in again.info["dpi"]) == (150, 150)
    chunks = _png_chunks(data)
    assert [c[0] for c in chunks[:2]] == [b"IHDR", b"pHYs"] and chunks[-1][0] == b"IEND"
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    row = 1 + page.width * len(expected.getbands())
    assert {raw[i] for i in range(0, len(raw), row)} == {2}  # PNG filter type 2, "Up", on every row
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(np.asarray(expected), 150)))),
                          np.asarray(expected))  # arrays too


def test_plain_pngs_decode_through_libvips_with_pillows_pixels(photo):
    """8-bit RGB PNGs (most illustrations) take libvips's decoder: same pixels as Pillow's; any
    other PNG, and one libvips finds wrong (truncated, a bad checksum), goes to Pillow (which
    refuses a broken one)."""
    from steps.core.images import _plain_png

    rgb = png_bytes(photo.convert("RGB"))
    fast = _plain_png(rgb)
    assert fast is not None and np.array_equal(fast, np.asarray(photo.convert("RGB")))
    assert np.array_equal(load_page(rgb, photo.size), np.asarray(photo.convert("RGB")))
    for other in (photo.convert("RGBA"), photo.convert("L"), photo.convert("P")):
        assert _plain_png(png_bytes(other)) is None
    truncated = rgb[:len(rgb) // 2]
    assert _plain_png(truncated) is None
    with pytest.raises(InputError) as e:
        load_page(truncated, photo.size)
    assert e.value.reason == "bad_image"
    # one flipped byte in the pixel data: the IDAT checksum (CRC-32) no longer matches, and
    # libvips, which would read on past it by default, gives it up
    at = rgb.index(b"IDAT") + 40
    damaged = rgb[:at] + bytes([rgb[at] ^ 0xFF]) + rgb[at + 1:]
    assert _plain_png(damaged) is None


def test_own_pngs_decode_to_the_pixels_encoded(photo):
    from steps.core.images import decode_own_png

    pixels = np.asarray(photo.convert("RGB"))
    assert np.array_equal(decode_own_png(encode_png(pixels, 300)), pixels)
    # a PNG of another encoder (Pillow's filters) decodes the same through OpenCV
    assert np.array_equal(decode_own_png(png_bytes(photo.convert("RGB"))), pixels)


def _png(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit RGB PNG with this header and this IDAT, checksums right."""
    from steps.core.images import PNG_SIGNATURE, _chunk

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


PEAK = """
import sys
from steps.core.images import decode_own_png

def high_water_kib():  # this process's own peak (ru_maxrss would carry its parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
before = high_water_kib()
try:
    shape = decode_own_png(data).shape
except ValueError as e:
    shape = str(e)
print((high_water_kib() - before) // 1024, shape)
"""


def test_a_png_bomb_costs_what_its_header_says(tmp_path):
    """A 100x100 page whose IDAT inflates to 128 MB (its rows "Up"-filtered, as ours are):
    decoded as the 100x100 page its header says, without inflating the rest (measured in a
    process of its own: before the bound, its peak memory grew by the whole 128 MB)."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    rows = (b"\x02" + bytes(300)) * 10_000           # 3 MB at a time: this process stays small
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(rows) for _ in range(128_000_000 // len(rows))) + deflate.flush()
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(100, 100, idat))
    assert bomb.stat().st_size < 600_000
    done = subprocess.run([sys.executable, "-c", PEAK, str(bomb)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    grown, shape = done.stdout.split(maxsplit=1)
    assert int(grown) < 40 and shape.strip() == "(100, 100, 3)", done.stdout


def test_a_png_cut_off_in_its_pixels_is_refused():
    from steps.core.images import decode_own_png

    whole = encode_png(np.full((100, 100, 3), 7, np.uint8), 300)
    assert decode_own_png(whole).shape == (100, 100, 3)
    at = whole.index(b"IDAT")
    with pytest.raises(ValueError):
        decode_own_png(whole[:at + 40])


def test_a_png_header_larger_than_the_limit_is_refused_before_decoding():
    from steps.core.images import decode_own_png

    side = int(MAX_PIXELS ** 0.5) + 1          # just over the limit; one pixel less is allowed
    with pytest.raises(ValueError, match="more than 50 million"):
        decode_own_png(_png(side, side, zlib.compress(b"")))
    with pytest.raises(ValueError, match="could not decode"):   # within it: tried, and broken
        decode_own_png(_png(side - 1, side - 1, zlib.compress(b"")))


def test_a_plain_rgb_png_of_the_page_size_is_usable_as_it_is(photo):
    """A page without a face keeps the book's own file as its background when that file is a
    whole, undamaged 8-bit RGB PNG of the page size without transparency; anything else is
    decoded (and refused there if broken)."""
    from steps.core.images import usable_as_is

    rgb = png_bytes(photo.convert("RGB"))
    assert usable_as_is(rgb, photo.size)
    assert not usable_as_is(rgb, (photo.width + 1, photo.height))          # another size
    assert not usable_as_is(rgb, (photo.width, photo.height - 1))
    for other in (photo.convert("RGBA"), photo.convert("L"), photo.convert("P")):
        assert not usable_as_is(png_bytes(other), photo.size)
    with_trns = png_bytes(photo.convert("RGB"), transparency=(0, 0, 0))
    assert b"tRNS" in with_trns and not usable_as_is(with_trns, photo.size)
    header = rgb[16:28] + b"\x01"                                            # Adam7, CRC right
    interlaced = rgb[:16] + header + struct.pack(">I", zlib.crc32(header, zlib.crc32(b"IHDR"))) + rgb[33:]
    assert not usable_as_is(interlaced, photo.size)
    sixteen = Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)
    assert not usable_as_is(png_bytes(sixteen), photo.size)
    assert not usable_as_is(rgb[:-12], photo.size)                          # no IEND
    assert not usable_as_is(rgb[:len(rgb) // 2], photo.size)                # truncated
    at = rgb.index(b"IDAT") + 40
    assert not usable_as_is(rgb[:at] + bytes([rgb[at] ^ 1]) + rgb[at + 1:], photo.size)  # one bit
    assert not usable_as_is(b"GIF89a" + rgb[6:], photo.size)
