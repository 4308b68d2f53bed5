"""The image codec: safe decoding of what parents upload and designers draw, print PNGs.

A photo is decoded once, upright (EXIF orientation), as 8-bit RGB, whatever it came as
(JPEG, PNG, WebP, HEIC; 16-bit, CMYK, grayscale, palette, alpha), and never beyond
:data:`MAX_PIXELS`, so a decompression bomb is an input error, not an out-of-memory kill.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from steps.core.errors import InputError

MAX_PIXELS = 50_000_000
MIN_PHOTO_SIDE = 64
PHOTO_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic", "MPO": "jpg"}
# Print PNGs: deflate (ISA-L) level 1, every row with PNG's "Up" filter (see encode_png).
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_ROWS = 256

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _register_heif() -> None:
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # the photo simply cannot be HEIC then
        return
    register_heif_opener()


_register_heif()


def _open(data: bytes, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        fix = "send a smaller image" if what == "photo" else "use a smaller image in the book"
        raise InputError("image_too_large", f"The {what} has more than {MAX_PIXELS // 1_000_000} "
                                            f"million pixels; {fix}.") from None
    except (OSError, SyntaxError, ValueError) as e:
        truncated = "truncated" in str(e) or "broken" in str(e)
        detail = "is truncated or damaged" if truncated else "is not a readable image"
        fix = "send" if what == "photo" else "replace it with"
        raise InputError("bad_image", f"The {what} {detail}; {fix} a complete JPEG, PNG, WebP "
                                      "or HEIC file.") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode; transparency is flattened onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * 255.0 / peak, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def photo_ext(data: bytes) -> str | None:
    """The file extension a photo's content calls for, or None if it is no supported image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return PHOTO_FORMATS.get(image.format or "")
    except Exception:  # noqa: BLE001 - anything unreadable is simply "not an image"
        return None


def load_photo(data: bytes) -> np.ndarray:
    """The child's photo: upright 8-bit RGB, HxWx3."""
    image = _open(data, "photo")
    if (image.format or "") not in PHOTO_FORMATS:
        raise InputError("bad_image", f"The photo is a {image.format} file; send a JPEG, PNG, "
                                      "WebP or HEIC photo.")
    image = ImageOps.exif_transpose(image) or image
    if min(image.size) < MIN_PHOTO_SIDE:
        raise InputError("photo_too_small", f"The photo is only {image.width}x{image.height} "
                                            f"pixels; send a photo at least {MIN_PHOTO_SIDE} "
                                            "pixels on each side.")
    return np.asarray(to_rgb(image))


def load_page(data: bytes, size: tuple[int, int], what: str = "page image") -> np.ndarray:
    """An illustration as RGB pixels (HxWx3) at exactly ``size`` (width, height)."""
    width, height = size
    pixels = _plain_png(data)
    if pixels is not None and pixels.shape[:2] == (height, width):
        return pixels  # the usual case: no copy on the way
    image = Image.fromarray(pixels) if pixels is not None else to_rgb(_open(data, what))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image)


def usable_as_is(data: bytes, size: tuple[int, int]) -> bool:
    """Whether a book's page image can be a page's background as it is (a page without a face
    needs no decoding or encoding then): an 8-bit RGB PNG without transparency, not
    interlaced, exactly ``size`` (width, height), whole (it ends with IEND) and with every
    chunk's checksum right. A truncated or damaged file is not; :func:`load_page` refuses it."""
    header = _rgb8_header(data)
    if header is None or header != (*size, 0):
        return False
    for kind, _, whole in _chunks(data):
        if not whole or kind == b"tRNS":
            return False
        if kind == b"IEND":
            return True
    return False


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG's header claims; None if it is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _rgb8_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, interlace) of an 8-bit RGB PNG, from its header; None for anything else."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return (width, height, interlace) if (depth, colour) == (8, 2) else None


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bool]]:
    """A PNG's chunks, in order: (kind, body, whole: all there and its CRC-32 right); the walk
    ends at the first chunk that is cut off."""
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        body = data[at + 8:end - 4]
        whole = end <= len(data) and zlib.crc32(body, zlib.crc32(kind)) == int.from_bytes(data[end - 4:end], "big")
        yield kind, body, whole
        if not whole and end > len(data):
            return
        at = end


def _plain_png(data: bytes) -> np.ndarray | None:
    """An 8-bit RGB PNG without transparency (what illustrations usually are), decoded by
    libvips (its PNG loader on zlib-ng: the same pixels as Pillow's decoder in under half the time;
    the README's "Speed" section). None for anything else, and for anything libvips finds
    wrong (a truncated file, a bad checksum), which Pillow then decodes or refuses."""
    header = _rgb8_header(data)
    if header is None or header[0] * header[1] > MAX_PIXELS or b"tRNS" in data[:1 << 16]:
        return None
    width, height, _ = header
    vips = _vips()
    try:
        image = vips.Image.new_from_buffer(data, "", access="sequential", fail_on="warning")
        if (image.width, image.height, image.bands, image.format) != (width, height, 3, "uchar"):
            return None
        memory = image.write_to_memory()
    except vips.Error:
        return None
    return np.frombuffer(memory, np.uint8).reshape(height, width, 3)  # writable, owns its buffer


def decode_rgba(data: bytes) -> np.ndarray:
    """A PNG the browser made (a text layer: RGBA, or RGB when it has no transparency) as RGBA
    pixels (HxWx4), decoded by libvips (about three times faster than Pillow)."""
    vips = _vips()
    image = vips.Image.new_from_buffer(data, "", access="sequential", fail_on="warning")
    if image.format != "uchar" or image.bands not in (3, 4):
        raise ValueError(f"expected an 8-bit RGB or RGBA PNG, got {image.bands} {image.format} bands")
    if image.bands == 3:
        image = image.bandjoin(255)
    return np.frombuffer(image.write_to_memory(), np.uint8).reshape(image.height, image.width, 4)


def _vips() -> Any:
    """pyvips, set up for one page at a time: one thread (the steps run side by side on the
    cores already) and no cache of decoded images."""
    import pyvips

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    return pyvips


def decode_own_png(data: bytes) -> np.ndarray:
    """A page background as an RGB array: a PNG bookjob wrote itself, or a book's base page
    kept as it is (:func:`usable_as_is`). Uploads go through :func:`load_photo`, base pages to
    be worked on through :func:`load_page`.

    Our own encoding (8-bit RGB, "Up" on every row) is inflated and un-filtered here (a row
    added to the one above it, no per-pixel work); any other 8-bit RGB PNG goes through libvips,
    the rest through OpenCV. A base page kept as it is reaches this too, so nothing is trusted:
    a header claiming more than :data:`MAX_PIXELS` is refused before any pixel is decoded, and
    no more is inflated than the header's rows (a bomb costs what its header says, no more).
    """
    size = png_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"The PNG claims {size[0]}x{size[1]} pixels, more than "
                         f"{MAX_PIXELS // 1_000_000} million.")
    own = _decode_up_filtered(data)
    if own is None:
        own = _plain_png(data)
    if own is not None:
        return own
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("OpenCV could not decode the PNG.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


def _decode_up_filtered(data: bytes) -> np.ndarray | None:
    """The RGB pixels of a PNG as :func:`encode_png` writes them, or None if it is not one."""
    from isal import isal_zlib

    header = _rgb8_header(data)
    if header is None or header[2] != 0:
        return None
    width, height, _ = header
    idat = []
    for kind, body, _ in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if not idat:
        return None
    try:
        if isal_zlib.decompressobj().decompress(idat[0][:256], 1) != b"\x02":
            return None  # the first row is not "Up": another encoder's PNG (e.g. the book's)
        stride = 1 + 3 * width
        inflate = isal_zlib.decompressobj()
        raw = inflate.decompress(b"".join(idat), height * stride + 1)   # never past the header
        if len(raw) != height * stride or inflate.unconsumed_tail:
            return None
    except isal_zlib.error:  # type: ignore[misc]  # isal ships no type for its error class
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride)
    if not (rows[:, 0] == 2).all():
        return None
    pixels = np.empty((height, 3 * width), np.uint8)
    pixels[0] = rows[0, 1:]
    for y in range(1, height):  # "Up": each row is the difference to the row above (mod 256)
        np.add(pixels[y - 1], rows[y, 1:], out=pixels[y])
    return pixels.reshape(height, width, 3)


def encode_png(image: Image.Image | np.ndarray, dpi: int, bgr: bool = False) -> bytes:
    """A lossless PNG of an RGB (or grayscale) page, with the DPI in its pHYs chunk; ``bgr``:
    the array is in OpenCV's channel order.

    Every row gets PNG's "Up" filter (the difference to the row above: one vectorised
    subtraction, where libpng and Pillow choose a filter per row) and the rows are deflated by
    ISA-L at its level 1 (``isal``: several times faster than zlib's level 1, files no larger);
    figures in the README's "Speed" section. A standard PNG that every reader opens.
    """
    from isal import isal_zlib

    if isinstance(image, Image.Image):
        array = np.asarray(image if image.mode in ("RGB", "L") else image.convert("RGB"))
    else:
        array = image[:, :, ::-1] if bgr and image.ndim == 3 else image
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError("encode_png takes 8-bit RGB or grayscale pixels.")
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else 3
    deflate = isal_zlib.compressobj(PNG_COMPRESS_LEVEL)
    parts = []
    for y0 in range(0, height, STRIP_ROWS):  # strips: bounded memory, same bytes every run
        strip = array[y0:y0 + STRIP_ROWS]
        rows = np.empty((len(strip), 1 + width * channels), np.uint8)
        rows[:, 0] = 2
        pixels = rows[:, 1:].reshape(strip.shape)
        np.subtract(strip, array[y0 - 1:y0 - 1 + len(strip)] if y0 else _up_first(strip), out=pixels)
        parts.append(deflate.compress(rows))
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    per_metre = int(dpi / 0.0254 + 0.5)
    return b"".join([PNG_SIGNATURE, _chunk(b"IHDR", header),
                     _chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
                     _chunk(b"IDAT", b"".join(parts)), _chunk(b"IEND", b"")])


def _up_first(strip: np.ndarray) -> np.ndarray:
    """The rows above the first strip: zero above the first row (PNG's rule), then the strip."""
    above = np.empty_like(strip)
    above[0] = 0
    above[1:] = strip[:-1]
    return above


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


