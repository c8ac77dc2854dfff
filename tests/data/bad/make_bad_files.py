"""Regenerates the bad-input corpus in this folder: `python tests/data/bad/make_bad_files.py`.

Each file is something a user may really drop on Studio. The expectations (clear message or
a specific successful normalisation) live in tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1), "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(w: int, h: int) -> bytes:
    """A valid 1-bit PNG that claims w x h: tiny on disk, huge decoded."""
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((w + 7) // 8)
    body = b"".join(raw.compress(row) for _ in range(h)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


class Evil:
    """Unpickling this would run a shell command (it must never happen)."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/studio-pwned-by-pickle",))


def main() -> None:
    g = gradient()
    good = png_bytes(g)
    files: dict[str, bytes] = {}
    files["empty.png"] = b""
    files["truncated.png"] = good[: len(good) // 2]
    files["truncated_header.png"] = good[:20]
    jpg = io.BytesIO()
    g.save(jpg, "JPEG", quality=90)
    files["truncated.jpg"] = jpg.getvalue()[: len(jpg.getvalue()) // 3]
    files["not_an_image.png"] = b"Hello, this is a text file pretending to be a PNG.\n" * 4
    files["random_bytes.jpg"] = np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
    files["html_as.webp"] = b"<!doctype html><html><body>404 Not Found</body></html>"
    files["bomb_30000x30000.png"] = bomb_png(30000, 30000)
    files["huge_20000x100.png"] = bomb_png(20000, 100)
    files["zero_height.png"] = good[:16] + struct.pack(">II", 64, 0) + good[24:]
    crc_bad = bytearray(good)
    crc_bad[40] ^= 0xFF  # inside the IDAT data: checksum/zlib errors
    files["corrupt_idat.png"] = bytes(crc_bad)
    cmyk = io.BytesIO()
    g.convert("CMYK").save(cmyk, "JPEG")
    files["cmyk.jpg"] = cmyk.getvalue()
    arr16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    files["gray16.png"] = png_bytes(Image.fromarray(arr16))
    pal = g.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    files["palette_transparency.png"] = png_bytes(pal, transparency=0)
    frames = [gradient().rotate(a) for a in (0, 90, 180)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated.gif"] = gif.getvalue()
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:], duration=100)
    files["animated.png"] = apng.getvalue()
    # EXIF orientation 6 (rotate 90 CW to view): stored 64x48 landscape, shown 48x64 portrait.
    exif = Image.Exif()
    exif[0x0112] = 6
    ex = io.BytesIO()
    g.save(ex, "JPEG", exif=exif.tobytes(), quality=95)
    files["exif_rotated.jpg"] = ex.getvalue()
    files["one_pixel.png"] = png_bytes(Image.new("RGB", (1, 1), (200, 10, 10)))
    files["png_named.jpg"] = good  # wrong extension, valid content
    files["grayscale_alpha.png"] = png_bytes(g.convert("LA"))
    files["float32.tiff"] = _tiff_float()
    files["fake.safetensors"] = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"
    files["truncated.safetensors"] = struct.pack("<Q", 1000) + b'{"a": {"dtype": "F32"'
    files["malicious.pth"] = _malicious_zip_pickle()
    files["malicious.ckpt"] = pickle.dumps({"state_dict": Evil()}, protocol=2)
    files["text.pth"] = b"this is not a checkpoint"
    files["corrupt.studio"] = b"PK\x03\x04 not really a zip"
    files["not_a_zip.studio"] = b"{}"
    files["newer_version.studio"] = _studio_zip({"format": "studio-project", "version": 999})
    files["missing_layers.studio"] = _studio_zip(
        {
            "format": "studio-project",
            "version": 1,
            "width": 64,
            "height": 64,
            "layers": [{"name": "gone", "kind": "image", "file": "layers/0.png"}],
        }
    )
    # A valid project claiming a canvas no machine can hold (931 GiB for the mask alone), and
    # one far over the image limit (16384 px a side) whose arrays numpy allocates lazily.
    files["huge_canvas.studio"] = _studio_zip(
        {
            "format": "studio-project",
            "version": 1,
            "width": 1_000_000,
            "height": 1_000_000,
            "layers": [],
        }
    )
    files["oversized_canvas.studio"] = _studio_zip(
        {
            "format": "studio-project",
            "version": 1,
            "width": 100_000,
            "height": 100_000,
            "layers": [],
        }
    )
    files["bad_second_page.tiff"] = _tiff_bad_second_page()
    # Zip flags the fuzzer flipped: zipfile raises RuntimeError / NotImplementedError on read.
    files["encrypted_layer.studio"] = _project_patched(encrypted=True)
    files["unknown_compression.studio"] = _project_patched(method=99)
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} files to {HERE}")


def _tiff_bad_second_page() -> bytes:
    """A good first page whose next-IFD pointer leads to a page without a size: Pillow's
    n_frames raises TypeError("Missing dimensions") (found by the fuzzer)."""
    buf = io.BytesIO()
    gradient().save(buf, "TIFF")
    b = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", b[4:8])[0]
    next_ptr = ifd + 2 + 12 * struct.unpack("<H", b[ifd : ifd + 2])[0]
    b += b"\0" * (len(b) % 2)
    b[next_ptr : next_ptr + 4] = struct.pack("<I", len(b))
    b += struct.pack("<H", 1) + struct.pack("<HHII", 0x0103, 3, 1, 1) + struct.pack("<I", 0)
    return bytes(b)


def _project_patched(encrypted: bool = False, method: int | None = None) -> bytes:
    """A valid one-layer project whose layer entry is marked encrypted or given an unknown
    compression method, in both its local and central zip headers."""
    manifest = {
        "format": "studio-project",
        "version": 1,
        "width": 64,
        "height": 48,
        "layers": [{"name": "Background", "kind": "image", "file": "layers/0.png"}],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("layers/0.png", png_bytes(gradient().convert("RGBA")))
        z.writestr("manifest.json", json.dumps(manifest))
    b = bytearray(buf.getvalue())
    name = b"layers/0.png"
    for sig, flags_at, method_at, name_len_at, name_at in (
        (b"PK\x03\x04", 6, 8, 26, 30),
        (b"PK\x01\x02", 8, 10, 28, 46),
    ):
        i = b.find(sig)
        while i != -1:
            n = struct.unpack("<H", b[i + name_len_at : i + name_len_at + 2])[0]
            if b[i + name_at : i + name_at + n] == name:
                if encrypted:
                    b[i + flags_at] |= 1
                if method is not None:
                    b[i + method_at : i + method_at + 2] = struct.pack("<H", method)
            i = b.find(sig, i + 4)
    return bytes(b)


def _tiff_float() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64), "F").save(
        buf, "TIFF"
    )
    return buf.getvalue()


def _malicious_zip_pickle() -> bytes:
    """A torch-style zip checkpoint whose data.pkl runs a command if fully unpickled."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"weight": Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _studio_zip(manifest: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
    return buf.getvalue()


if __name__ == "__main__":
    main()
