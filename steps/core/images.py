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

import numpy as np
from PIL import Image, ImageOps

from steps.core.errors import InputError

MAX_PIXELS = 50_000_000
MIN_PHOTO_SIDE = 64
PHOTO_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic", "MPO": "jpg"}
# Print PNGs: zlib level 1, every row with PNG's "Up" filter (see encode_png).
PNG_COMPRESS_LEVEL = 1

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


def load_page(data: bytes, size: tuple[int, int], what: str = "page image") -> Image.Image:
    """An illustration as RGB at exactly ``size`` (width, height)."""
    image = to_rgb(_open(data, what))
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.LANCZOS)
    return image


def decode_own_png(data: bytes) -> np.ndarray:
    """A PNG bookjob wrote itself (a page background) as an OpenCV BGR array. Uploads and book
    files are not for this: they go through :func:`load_photo` and :func:`load_page`."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("OpenCV could not decode the PNG.")
    return image


def encode_png(image: Image.Image | np.ndarray, dpi: int, bgr: bool = False) -> bytes:
    """A lossless PNG of an RGB (or grayscale) page, with the DPI in its pHYs chunk; ``bgr``:
    the array is in OpenCV's channel order already (no copy made).

    libpng through OpenCV at zlib level 1 with the Up filter on every row. Pillow tries all five
    PNG filters on each row, which is most of its encoding time; one fixed filter is 3-5x
    faster on print-size pages and, for flat illustrations and photographs alike, gives files
    no larger than Pillow's level 1 (figures in the README's "Speed" section).
    """
    import cv2

    if isinstance(image, Image.Image):
        array = np.array(image if image.mode in ("RGB", "L") else image.convert("RGB"))
        if array.ndim == 3:
            cv2.cvtColor(array, cv2.COLOR_RGB2BGR, dst=array)  # our own copy: swap in place
    elif image.ndim == 3 and not bgr:
        array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    else:
        array = image
    ok, encoded = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL,
                                               cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:
        raise ValueError("OpenCV could not encode the page as PNG.")
    return _with_dpi(encoded.tobytes(), dpi)


def _with_dpi(png: bytes, dpi: int) -> bytes:
    """``png`` with a pHYs chunk (pixels per metre, as Pillow writes it) after its IHDR chunk."""
    per_metre = int(dpi / 0.0254 + 0.5)
    body = b"pHYs" + struct.pack(">IIB", per_metre, per_metre, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length and type, its 13 bytes, its CRC
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]
