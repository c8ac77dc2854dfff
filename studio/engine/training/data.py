"""The training set, torch-free (numpy + Pillow): finding and checking the images, captions,
aspect-ratio buckets, the batch schedule, and where a run keeps its files.

Aspect-ratio buckets (NovelAI's and kohya-ss sd-scripts' bucketing): instead of a forced
square crop, each image goes to the bucket (W, H) -- both multiples of 64, W x H about
``resolution``^2 -- whose aspect ratio is nearest its own (in log space), is resized to cover
it and centre-cropped by the few pixels left over. A batch holds images of one bucket only.
The crop offset and the original size are kept: SDXL's micro-conditioning (Podell et al.
2023, ``add_time_ids`` = original size + crop top-left + target size) takes them.

The batch schedule is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core.errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
BUCKET_STEP = 64
MAX_ASPECT = 4.0  # buckets go from 1:4 to 4:1 at most
MIN_AREA = 0.8  # a bucket holds 80-100% of resolution^2 pixels


def find_images(*sources: str | Path) -> list[Path]:
    """The training images of ``sources`` (folders, searched non-recursively, or image files),
    sorted, without duplicates. BadInput in one line when a source is missing or none holds an
    image."""
    found: list[Path] = []
    for src in sources:
        path = Path(src).expanduser()
        if not path.exists():
            raise BadInput(f"--images {src}: no such folder or file")
        if path.is_dir():
            try:
                children = sorted(path.iterdir())
            except OSError as e:
                raise BadInput(f"--images {src}: cannot read the folder ({e.strerror})") from e
            found += [
                c
                for c in children
                if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES and not c.name.startswith(".")
            ]
        else:
            found.append(path)
    out = list(dict.fromkeys(p.resolve() for p in found))
    if not out:
        names = ", ".join(str(s) for s in sources) or "(nothing given)"
        kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        raise BadInput(f"--images {names}: no images found ({kinds})")
    return out


def load_training_image(path: str | Path) -> np.ndarray:
    """An image as upright RGB uint8 (transparency composited onto white), or BadInput."""
    from studio.core.imageio import load_image, rgb_on_white

    image = load_image(Path(path), mode="auto")
    return rgb_on_white(image)


def check_images(paths: list[Path] | tuple[str, ...]) -> None:
    """Load every image once (BadInput naming the first one that is unreadable)."""
    if not paths:
        raise BadInput("No training images given (at least 1 is needed)")
    for p in paths:
        image = load_training_image(p)
        if min(image.shape[:2]) < 8:
            raise BadInput(f"{Path(p).name}: {image.shape[1]}x{image.shape[0]} is too small")


def sidecar_caption(path: str | Path) -> str | None:
    """The caption in ``image.txt`` next to ``image.png`` (kohya-ss convention), if any."""
    txt = Path(path).with_suffix(".txt")
    try:
        text = txt.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return " ".join(text.split()) or None


def instance_prompt(trigger: str, caption: str | None, class_prompt: str | None) -> str:
    """The prompt an instance image trains with: its caption (with the trigger put in front
    when the caption lacks it), else DreamBooth's "a photo of <trigger> <class>" (Ruiz et al.
    2023, with the class prompt's text as the class noun), else "a photo of <trigger>"."""
    if caption:
        if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption):
            return caption
        return f"{trigger}, {caption}"
    if class_prompt:
        noun = re.sub(r"^(an? )?(photo|picture|image) of (an? |the )?", "", class_prompt.strip())
        return f"a photo of {trigger} {noun}".strip()
    return f"a photo of {trigger}"


# -- buckets ----------------------------------------------------------------------------------


def make_buckets(resolution: int, step: int = BUCKET_STEP) -> list[tuple[int, int]]:
    """(W, H) buckets of about ``resolution``^2 pixels: both sides multiples of ``step``, the
    area 80-100% of ``resolution``^2 (rounded to the step), aspect ratios from 1:4 to 4:1;
    sorted by aspect ratio. The square bucket is always there."""
    side = max(step, int(resolution) // step * step)
    area = side * side
    buckets = {(side, side)}
    w = step
    while w <= side * MAX_ASPECT:
        h = area // w // step * step
        # every height from the largest that fits down to MIN_AREA of the area: finer aspect
        # ratios (576x384 for 3:2 at 512, not only 640x384 and 576x448)
        while h >= step and w * h >= MIN_AREA * area:
            if max(w, h) / min(w, h) <= MAX_ASPECT:
                buckets.add((w, h))
                buckets.add((h, w))
            h -= step
        w += step
    return sorted(buckets, key=lambda b: (b[0] / b[1], b[0]))


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest ``width / height`` (log distance; the larger
    area wins a tie)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


@dataclass(frozen=True)
class PreparedImage:
    """One training image resized to cover its bucket and centre-cropped to it. ``pixels``:
    (H, W, 3) uint8; ``original``: the source size (h, w); ``crop``: the crop's (top, left) in
    resized pixels; ``bucket``: (W, H)."""

    path: str
    pixels: np.ndarray
    original: tuple[int, int]
    crop: tuple[int, int]
    bucket: tuple[int, int]
    prompt: str


def fit_to_bucket(image: np.ndarray, bucket: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize ``image`` (Lanczos) so it covers ``bucket`` (W, H), then centre-crop the excess:
    (pixels, (top, left))."""
    from PIL import Image

    bw, bh = bucket
    h, w = image.shape[:2]
    scale = max(bw / w, bh / h)
    rw, rh = max(bw, round(w * scale)), max(bh, round(h * scale))
    im = Image.fromarray(image)
    if (rw, rh) != (w, h):
        im = im.resize((rw, rh), Image.Resampling.LANCZOS)
    top, left = (rh - bh) // 2, (rw - bw) // 2
    im = im.crop((left, top, left + bw, top + bh))
    return np.asarray(im, dtype=np.uint8), (top, left)


def prepare_images(
    paths: list[str] | tuple[str, ...],
    resolution: int,
    prompts: list[str],
) -> list[PreparedImage]:
    """Load, bucket and crop every image (BadInput for one that cannot be read)."""
    buckets = make_buckets(resolution)
    out = []
    for path, prompt in zip(paths, prompts, strict=True):
        image = load_training_image(path)
        h, w = image.shape[:2]
        bucket = nearest_bucket(w, h, buckets)
        pixels, crop = fit_to_bucket(image, bucket)
        out.append(PreparedImage(str(path), pixels, (h, w), crop, bucket, prompt))
    return out


# -- the batch schedule ---------------------------------------------------------------------


def epoch_batches(
    buckets: list[tuple[int, int]], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batches of one epoch: image indices grouped by bucket (``buckets[i]`` is image i's),
    shuffled within each bucket, cut into batches of ``batch_size`` (a bucket's last batch may
    be smaller), and the batches shuffled. A pure function of (seed, epoch)."""
    rng = np.random.default_rng([int(seed) & 0xFFFF_FFFF, int(epoch), 0x5EED])
    groups: dict[tuple[int, int], list[int]] = {}
    for i, b in enumerate(buckets):
        groups.setdefault(tuple(b), []).append(i)
    batches: list[list[int]] = []
    for key in sorted(groups):
        members = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        batches += [members[k : k + batch_size] for k in range(0, len(members), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[j] for j in order]


def batch_for_step(
    buckets: list[tuple[int, int]], batch_size: int, seed: int, step: int
) -> list[int]:
    """The image indices of training step ``step`` (0-based)."""
    per_epoch = len(epoch_batches(buckets, batch_size, seed, 0))
    epoch, k = divmod(int(step), per_epoch)
    return epoch_batches(buckets, batch_size, seed, epoch)[k]


# -- where a run keeps its files -----------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPaths:
    """``out``: the LoRA file; ``folder``: the run's folder next to it (a dot-folder, so the
    LoRA lists never show its checkpoints); ``checkpoints``: one ``step-NNNNNN`` folder per
    checkpoint; ``class_images``: the generated prior-preservation images."""

    out: Path
    folder: Path

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def class_images(self) -> Path:
        return self.folder / "class-images"


def slug(text: str) -> str:
    """A file-name-safe form of a trigger word ("sks dog" -> "sks_dog")."""
    s = re.sub(r"[^\w.-]+", "_", text.strip()).strip("._")
    return s[:64] or "lora"


def default_out(trigger: str) -> Path:
    """Studio's models folder ``lora/<trigger>.safetensors`` (where the LoRA lists look)."""
    from studio.engine.models.folders import kind_dir

    return kind_dir("lora") / f"{slug(trigger)}.safetensors"


def training_paths(out: str | Path | None, trigger: str) -> TrainingPaths:
    """The output file (``out`` or :func:`default_out`) and the run's folder beside it,
    ``.<name>.training``. BadInput for an output that is not a .safetensors file or whose
    folder does not exist (the default folder is created)."""
    if out is None:
        path = default_out(trigger)
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(out).expanduser()
        if path.suffix.lower() != ".safetensors":
            raise BadInput(f"--out {out}: a LoRA is written as .safetensors")
        if not path.parent.is_dir():
            raise BadInput(f"--out {out}: folder {path.parent} does not exist")
        if path.is_dir():
            raise BadInput(f"--out {out}: is a folder")
    path = path.resolve()
    return TrainingPaths(path, path.parent / f".{path.stem}.training")
