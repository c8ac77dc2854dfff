"""Loading and saving images with validation: one clear ``BadInput`` message for anything
that is not a usable image, and nothing half-written on save.

Arrays are numpy uint8, (H, W, 3) RGB or (H, W, 4) RGBA; masks are (H, W) uint8.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from studio.core.atomic import atomic_writer
from studio.core.errors import BadInput, StudioError

MAX_PIXELS = 16384 * 16384 // 2  # 134 MP: larger is refused (decompression-bomb guard)
MAX_SIDE = 16384
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _open(path: str | os.PathLike) -> Image.Image:
    p = Path(path)
    name = p.name
    if not p.exists():
        raise BadInput(f"{name}: no such file")
    if p.is_dir():
        raise BadInput(f"{name}: is a folder, not an image")
    try:
        size = p.stat().st_size
        if size == 0:
            raise BadInput(f"{name}: the file is empty")
        data = p.read_bytes()
    except PermissionError as e:
        raise BadInput(f"{name}: permission denied") from e
    except OSError as e:
        raise BadInput(f"{name}: cannot read ({e.strerror or e})") from e
    return open_bytes(data, name)


def open_bytes(data: bytes, name: str = "image") -> Image.Image:
    """Open and fully decode an image from bytes, or raise BadInput with a clear reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w < 1 or h < 1:
                raise BadInput(f"{name}: the image has no pixels")
            if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
                raise BadInput(
                    f"{name}: {w}x{h} is too large (at most {MAX_SIDE} px a side, "
                    f"{MAX_PIXELS // 1_000_000} megapixels)"
                )
            try:
                frames = getattr(im, "n_frames", 1)
            except Exception:  # noqa: BLE001 - a broken later frame (TIFF IFD): use the first
                frames = 2
            if frames > 1:
                im.seek(0)  # animated or multi-page: the first frame
            im.load()
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(f"{name}: the image is too large to open safely") from e
    except UnidentifiedImageError as e:
        raise BadInput(f"{name}: not an image (or a format Studio cannot read)") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error()) as e:
        raise BadInput(f"{name}: the image is damaged or truncated ({_reason(e)})") from e
    except MemoryError as e:
        raise BadInput(f"{name}: not enough memory to open this image") from e
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise TypeError, KeyError, ...
        raise BadInput(f"{name}: the image is damaged or unreadable ({_reason(e)})") from e
    return im


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text else type(e).__name__


def normalize(im: Image.Image, mode: str = "auto") -> np.ndarray:
    """Upright (EXIF), 8-bit, RGB or RGBA. ``mode``: "RGB", "RGBA" or "auto" (RGBA only if
    the image has transparency)."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the image unusable
        pass
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        hi = 1.0 if arr.max() <= 1.0 else arr.max()
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    want = mode if mode != "auto" else ("RGBA" if has_alpha else "RGB")
    if im.mode == "CMYK" or im.mode == "YCbCr" or im.mode == "LAB":
        im = im.convert("RGB")
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA")
    im = im.convert(want)
    return np.array(im, dtype=np.uint8)


def load_image(path: str | os.PathLike, mode: str = "auto") -> np.ndarray:
    """Load an image file as an upright uint8 RGB/RGBA array, or raise BadInput."""
    im = _open(path)
    try:
        return normalize(im, mode)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{Path(path).name}: cannot convert the image ({_reason(e)})") from e


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load a mask: white (or opaque, for images with alpha) = regenerate. Returns (H, W)
    uint8. ``size`` (w, h) checks it matches the image it belongs to."""
    im = _open(path)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - as in normalize: a broken EXIF block is ignored
        pass
    try:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            alpha = np.asarray(rgba)[..., 3]
            gray = np.asarray(rgba.convert("L"))
            # An all-opaque RGBA mask carries its meaning in the gray values.
            mask = gray if alpha.min() == 255 else alpha
        else:
            mask = np.asarray(im.convert("L"))
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{Path(path).name}: cannot convert the mask ({_reason(e)})") from e
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        raise BadInput(
            f"{Path(path).name}: the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{size[0]}x{size[1]}"
        )
    return np.ascontiguousarray(mask, dtype=np.uint8)


def rgb_on_white(image: np.ndarray) -> np.ndarray:
    """An RGB(A) uint8 image as RGB, transparent areas composited onto white (what
    controlnet_aux's HWC3 does before detection). BadInput for other shapes."""
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise BadInput(f"expected an RGB image, got shape {image.shape}")
    if image.shape[2] == 3:
        return image
    a = image[..., 3:4].astype(np.float32) / 255.0
    return (image[..., :3] * a + 255.0 * (1 - a)).clip(0, 255).astype(np.uint8)


def to_pil(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        return Image.fromarray(array, "L")
    return Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB")


def encode_image(
    array: np.ndarray,
    fmt: str = "PNG",
    parameters: str | None = None,
    studio: dict | None = None,
    quality: int = 95,
) -> bytes:
    """Encode to PNG/JPEG/WEBP bytes, with the A1111 ``parameters`` text and Studio's JSON
    (PNG: tEXt/iTXt chunks ``parameters`` and ``studio``; JPEG/WebP: EXIF UserComment holds
    ``parameters``, as A1111 does)."""
    im = to_pil(array)
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if parameters:
            info.add_itxt("parameters", parameters)
        if studio is not None:
            info.add_itxt("studio", json.dumps(studio, default=str))
        im.save(buf, "PNG", pnginfo=info, compress_level=4)
    else:
        if fmt == "JPEG" and im.mode != "RGB":
            im = im.convert("RGB")
        kwargs: dict = {"quality": quality}
        if parameters:
            exif = Image.Exif()
            # 0x9286 UserComment, "UNICODE\0" + UTF-16BE (what A1111/piexif write)
            exif[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")
            kwargs["exif"] = exif.tobytes()
        im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def save_image(
    path: str | os.PathLike,
    array: np.ndarray,
    parameters: str | None = None,
    studio: dict | None = None,
) -> Path:
    """Save atomically; the format follows the extension (.png, .jpg/.jpeg, .webp)."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"{path.name}: unsupported output format (use .png, .jpg or .webp)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    data = encode_image(array, fmt, parameters, studio)
    try:
        with atomic_writer(path) as f:
            f.write(data)
    except StudioError:
        raise
    return path


def read_text_chunks(path: str | os.PathLike) -> dict[str, str]:
    """The text metadata of an image: PNG text chunks, or EXIF UserComment as 'parameters'."""
    im = _open(path)
    out: dict[str, str] = {}
    for k, v in (getattr(im, "text", None) or {}).items():
        out[k] = v if isinstance(v, str) else str(v)
    if "parameters" not in out:
        try:
            exif = im.getexif()
            raw = exif.get_ifd(0x8769).get(0x9286) or exif.get(0x9286)
        except Exception:  # noqa: BLE001
            raw = None
        if isinstance(raw, bytes):
            out["parameters"] = _decode_user_comment(raw)
        elif isinstance(raw, str) and raw:
            out["parameters"] = raw
    return out


def _decode_user_comment(raw: bytes) -> str:
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                text = body.decode(enc)
                if text.isprintable() or "\n" in text:
                    return text
            except UnicodeDecodeError:
                continue
    return body.decode("utf-8", errors="replace").strip("\0")
