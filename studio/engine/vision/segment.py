"""Select by clicking and by words: promptable segmentation with SAM 2 and open-vocabulary
boxes from Grounding DINO.

- SAM 2 (Ravi et al. 2024, "SAM 2: Segment Anything in Images and Videos",
  arXiv:2408.00714), through transformers' ``Sam2Model`` / ``Sam2Processor``. The image
  encoder (Hiera + FPN) runs once per image (:meth:`SamSession.embed`); each click runs only
  the prompt encoder and the mask decoder on that embedding (:meth:`SamSession.decode`),
  which is what makes clicking interactive. The image is resized to the model's square
  input (1024 px for the released checkpoints, without keeping the aspect), so a prompt
  (x, y) in image pixels becomes (x * S / W, y * S / H); the decoder's low-resolution mask
  logits (S/4 square) are resized bilinearly to the image's size and thresholded at 0. For a
  single click the decoder predicts three masks and the one with the highest predicted IoU
  is kept (the ambiguity handling of SAM, Kirillov et al. 2023, Sec. 3); with several points
  or a box one mask is asked for.
- Grounding DINO (Liu et al. 2023, "Grounding DINO: Marrying DINO with Grounded Pre-Training
  for Open-Set Object Detection", arXiv:2303.05499) turns a phrase into boxes
  (:func:`boxes_for_text`); each box above the threshold is decoded by SAM 2 into one mask
  per instance ("Grounded SAM", Ren et al. 2024).

- SAM 3 (Carion et al. 2025, "SAM 3: Segment Anything with Concepts", arXiv:2511.16719)
  segments every instance of a phrase in one model (a DETR-style detector over a shared
  vision backbone with a presence head); with a SAM 3 folder as the model, words go through
  :class:`Sam3Segmenter` instead of Grounding DINO + SAM 2. Its click path (the SAM 2-like
  tracker) is not used here: clicks need a SAM 2 model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import BadInput, ModelError

if TYPE_CHECKING:
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import SegmentRequest
    from studio.engine.jobs.runner import JobContext

SAM2_ID = "sam2-hiera-small"
SAM2_REPO = "facebook/sam2.1-hiera-small"
DINO_ID = "grounding-dino-tiny"
DINO_REPO = "IDEA-Research/grounding-dino-tiny"
SAM3_ID = "sam3"
SAM3_REPO = "facebook/sam3"
# The models folder's sub-folder the segmentation models are looked up in.
FOLDER = "segment"
# SAM 3's instance threshold (transformers' Sam3Processor default) and mask logit threshold.
SAM3_THRESHOLD = 0.5
SAM3_MASK_THRESHOLD = 0.5
# Grounding DINO's demo thresholds (IDEA-Research/GroundingDINO README): a box is kept when
# its best token scores above BOX_THRESHOLD; its label gathers tokens above TEXT_THRESHOLD.
BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


# -- finding the models -------------------------------------------------------------------------


def is_model_folder(path: Path) -> bool:
    """A transformers folder: config.json beside the weights."""
    return (path / "config.json").is_file() and any((path / w).is_file() for w in _WEIGHTS)


def _installed(catalog_id: str, repo: str) -> Path | None:
    """Where the catalog model ``catalog_id`` is installed: through the catalog when it has
    the entry, then ``<models>/segment/<id>`` (Studio's and the portable folder), then the
    Hugging Face cache. Never touches the network."""
    try:
        from studio.core.catalog import load_catalog
        from studio.engine.models.store import find_installed

        entry = load_catalog().get(catalog_id)
        found = find_installed(entry) if entry is not None else None
    except Exception:  # noqa: BLE001 - a catalog without the entry or with a bad user file
        found = None
    if found is not None and is_model_folder(found):
        return found
    from studio.engine.models.folders import models_dir, portable_dir

    roots = [models_dir()] + ([portable_dir()] if portable_dir() is not None else [])
    for root in roots:
        candidate = root / FOLDER / catalog_id
        if is_model_folder(candidate):
            return candidate
    from studio.engine.models.resolver import hf_cached

    cached = hf_cached(repo)
    return cached if cached is not None and is_model_folder(cached) else None


def _find(ref: str | None, catalog_id: str, repo: str, what: str) -> Path:
    ref = (ref or "").strip()
    if ref in ("", catalog_id, repo):
        found = _installed(catalog_id, repo)
        if found is None:
            raise ModelError(f"{what} is not installed: studio models download {catalog_id}")
        return found
    path = Path(ref).expanduser()
    if path.is_dir():
        if not is_model_folder(path):
            raise ModelError(f"{path.name}: not a {what} folder (config.json and weights)")
        return path
    raise ModelError(f"{ref}: no such {what} model (a folder, or {catalog_id})")


def find_sam2(model: str | None = None) -> Path:
    """The SAM 2 folder ``model`` names (a folder, ``sam2-hiera-small``/its repo id, or None
    for the installed one). Raises ModelError saying how to get it."""
    return _find(model, SAM2_ID, SAM2_REPO, "SAM 2")


def find_grounding_dino(model: str | None = None) -> Path:
    """The Grounding DINO folder ``model`` names (as :func:`find_sam2`)."""
    return _find(model, DINO_ID, DINO_REPO, "Grounding DINO")


def model_type(folder: Path) -> str:
    """The ``model_type`` of a transformers folder's config.json ("" when unreadable)."""
    import json

    try:
        return str(json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def is_sam3(folder: Path) -> bool:
    return model_type(folder) in ("sam3", "sam3_video")


def find_segment_model(model: str | None) -> Path:
    """The folder ``model`` names: a SAM 2 or SAM 3 folder, ``sam3``/its repo id, or (None,
    ``sam2-hiera-small``) the installed SAM 2."""
    ref = (model or "").strip()
    if ref in (SAM3_ID, SAM3_REPO):
        return _find(ref, SAM3_ID, SAM3_REPO, "SAM 3")
    return find_sam2(model)


# -- geometry ---------------------------------------------------------------------------------


def rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a gray, RGB or RGBA uint8 array."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise BadInput("the image must be an (H, W, 3|4) uint8 array")
    return np.ascontiguousarray(image[..., :3])


def image_digest(image: np.ndarray) -> str:
    """A hash of the image's pixels and shape: the key of its cached embedding."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def check_prompt(
    points: Sequence[tuple[float, float, int]],
    box: tuple[float, float, float, float] | None,
    width: int,
    height: int,
) -> None:
    """BadInput (one line) for a point or box outside the image, a label other than 0/1 or
    an empty box. Coordinates are continuous pixels: the image spans [0, W] x [0, H]."""
    for p in points:
        if len(p) != 3:
            raise BadInput(f"point {tuple(p)} must be (x, y, label)")
        x, y, label = p
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
            raise BadInput(f"point ({x:g}, {y:g}) is outside the {width}x{height} image")
        if label not in (0, 1):
            raise BadInput(f"point ({x:g}, {y:g}): label must be 1 (inside) or 0 (outside)")
    if box is not None:
        if len(box) != 4 or not all(np.isfinite(v) for v in box):
            raise BadInput("the box must be four numbers: x0, y0, x1, y1")
        x0, y0, x1, y1 = box
        text = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if min(x0, x1) < 0 or min(y0, y1) < 0 or max(x0, x1) > width or max(y0, y1) > height:
            raise BadInput(f"{text} is outside the {width}x{height} image")
        if x1 <= x0 or y1 <= y0:
            raise BadInput(f"{text} is empty: x1 must exceed x0 and y1 exceed y0")


def to_model_coords(xy: np.ndarray, width: int, height: int, target: int) -> np.ndarray:
    """Image-pixel coordinates (..., 2k) as (x, y) pairs -> the model's square input of side
    ``target``: x * target / W, y * target / H (the processor resizes without padding)."""
    out = np.asarray(xy, dtype=np.float64).reshape(-1, 2).copy()
    out[:, 0] *= target / width
    out[:, 1] *= target / height
    return out.reshape(np.shape(xy)).astype(np.float32)


def masks_to_image(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Low-resolution mask logits (N, h, w) -> (N, H, W) uint8 masks, 255 inside: bilinear
    resize to the image's size (corners not aligned), then logit > 0."""
    up = F.interpolate(
        logits[:, None].float(), (height, width), mode="bilinear", align_corners=False
    )
    return ((up[:, 0] > 0).to(torch.uint8) * 255).cpu().numpy()


# -- SAM 2 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEmbedding:
    """SAM 2's image features for one image: the FPN levels the mask decoder reads."""

    features: tuple[torch.Tensor, ...]
    width: int
    height: int
    digest: str


class SamSession:
    """One SAM 2 model and the embedding of the image being clicked on."""

    def __init__(self, model, processor, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        self.target = int(processor.target_size)
        self.embedding: ImageEmbedding | None = None

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> SamSession:
        from transformers import Sam2Model, Sam2Processor

        from studio.engine.jobs.device import pick_device

        dev = pick_device(device).device
        try:
            model = Sam2Model.from_pretrained(str(folder), dtype=torch.float32).to(dev)
            processor = Sam2Processor.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{Path(folder).name}: cannot load SAM 2 ({e})".splitlines()[0]) from e
        return cls(model, processor, dev)

    @torch.no_grad()
    def compute_embedding(self, image: np.ndarray) -> ImageEmbedding:
        """Run the image encoder on ``image`` (the expensive step) and return its features."""
        image = rgb(image)
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        features = self.model.get_image_embeddings(pixels.to(self.device, torch.float32))
        h, w = image.shape[:2]
        return ImageEmbedding(tuple(features), w, h, image_digest(image))

    def embed(self, image: np.ndarray) -> ImageEmbedding:
        """Make ``image`` the one clicks refer to, running the encoder only when it is not
        the image already embedded."""
        digest = image_digest(rgb(image))
        if self.embedding is None or self.embedding.digest != digest:
            self.embedding = self.compute_embedding(image)
        return self.embedding

    def use(self, embedding: ImageEmbedding) -> None:
        """Make an embedding computed earlier (e.g. cached by the runner) the current one."""
        self.embedding = embedding

    @torch.no_grad()
    def decode_with_score(
        self,
        points: Sequence[tuple[float, float]] = (),
        labels: Sequence[int] = (),
        box: tuple[float, float, float, float] | None = None,
    ) -> tuple[np.ndarray, float]:
        """The mask (H, W) uint8 0/255 for the prompt, and its predicted IoU."""
        emb = self.embedding
        if emb is None:
            raise RuntimeError("embed() an image before decoding")
        if len(points) != len(labels):
            raise BadInput("each point needs a label")
        prompt = [(float(x), float(y), int(v)) for (x, y), v in zip(points, labels, strict=True)]
        check_prompt(prompt, box, emb.width, emb.height)
        if not prompt and box is None:
            raise BadInput("give a point or a box to select")
        kwargs: dict[str, torch.Tensor] = {}
        if prompt:
            xy = to_model_coords(
                np.array([p[:2] for p in prompt]), emb.width, emb.height, self.target
            )
            kwargs["input_points"] = torch.from_numpy(xy).view(1, 1, -1, 2).to(self.device)
            kwargs["input_labels"] = torch.tensor(
                [[[p[2] for p in prompt]]], dtype=torch.int64, device=self.device
            )
        if box is not None:
            b = to_model_coords(np.array(box), emb.width, emb.height, self.target)
            kwargs["input_boxes"] = torch.from_numpy(b).view(1, 1, 4).to(self.device)
        multimask = len(prompt) == 1 and box is None
        out = self.model(image_embeddings=list(emb.features), multimask_output=multimask, **kwargs)
        scores = out.iou_scores[0, 0].float()  # (K,)
        best = int(torch.argmax(scores))
        mask = masks_to_image(out.pred_masks[0, 0, best : best + 1], emb.height, emb.width)[0]
        return mask, float(scores[best])

    def decode(
        self,
        points: Sequence[tuple[float, float]] = (),
        labels: Sequence[int] = (),
        box: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """The binary uint8 mask (0/255, the image's size) for clicks and/or a box on the
        embedded image; only the prompt encoder and mask decoder run."""
        return self.decode_with_score(points, labels, box)[0]


# -- Grounding DINO -----------------------------------------------------------------------------


class TextDetector:
    """Grounding DINO: boxes of the objects a phrase names."""

    def __init__(self, model, processor, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> TextDetector:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        from studio.engine.jobs.device import pick_device

        dev = pick_device(device).device
        try:
            model = GroundingDinoForObjectDetection.from_pretrained(
                str(folder), dtype=torch.float32
            ).to(dev)
            processor = AutoProcessor.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError) as e:
            msg = f"{Path(folder).name}: cannot load Grounding DINO ({e})".splitlines()[0]
            raise ModelError(msg) from e
        return cls(model, processor, dev)

    @torch.no_grad()
    def boxes(
        self,
        image: np.ndarray,
        phrase: str,
        threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> tuple[list[tuple[float, float, float, float]], list[float], list[str]]:
        """Boxes (x0, y0, x1, y1 in image pixels, clipped to it), scores and matched words
        for ``phrase``, best first."""
        text = normalize_phrase(phrase)
        image = rgb(image)
        h, w = image.shape[:2]
        inputs = self.processor(images=image, text=text, return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            out,
            inputs["input_ids"],
            threshold=BOX_THRESHOLD if threshold is None else threshold,
            text_threshold=TEXT_THRESHOLD if text_threshold is None else text_threshold,
            target_sizes=[(h, w)],
        )[0]
        order = torch.argsort(result["scores"], descending=True).tolist()
        boxes, scores, words = [], [], []
        labels = result["text_labels"] if "text_labels" in result else None
        for i in order:
            x0, y0, x1, y1 = (float(v) for v in result["boxes"][i].tolist())
            x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
            y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            boxes.append((x0, y0, x1, y1))
            scores.append(float(result["scores"][i]))
            words.append(str(labels[i]) if labels is not None else text)
        return boxes, scores, words


def normalize_phrase(phrase: str) -> str:
    """Grounding DINO's text form: lower case, ending with a period."""
    text = " ".join((phrase or "").split()).lower()
    if not text.strip(" ."):
        raise BadInput("the text to select is empty")
    return text if text.endswith(".") else text + "."


def boxes_for_text(
    image: np.ndarray,
    phrase: str,
    detector: TextDetector | None = None,
    threshold: float | None = None,
) -> tuple[list[tuple[float, float, float, float]], list[float]]:
    """Boxes (image pixels) and scores of the objects ``phrase`` names, above ``threshold``
    (default :data:`BOX_THRESHOLD`), with the installed Grounding DINO unless given one."""
    detector = detector or TextDetector.load(find_grounding_dino())
    boxes, scores, _ = detector.boxes(image, phrase, threshold)
    return boxes, scores


# -- SAM 3 ------------------------------------------------------------------------------------


class Sam3Segmenter:
    """SAM 3 from words: every instance of a phrase, with masks, boxes and scores. The vision
    backbone's output is kept per image, so a second phrase on it runs only the text encoder,
    the detector and the mask head."""

    def __init__(self, model, processor, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        self._vision: tuple[str, object] | None = None

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> Sam3Segmenter:
        from transformers import Sam3Model, Sam3Processor

        from studio.engine.jobs.device import pick_device

        dev = pick_device(device).device
        try:
            model = Sam3Model.from_pretrained(str(folder), dtype=torch.float32).to(dev)
            processor = Sam3Processor.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{Path(folder).name}: cannot load SAM 3 ({e})".splitlines()[0]) from e
        return cls(model, processor, dev)

    @torch.no_grad()
    def segment(
        self, image: np.ndarray, phrase: str, threshold: float | None = None
    ) -> tuple[list[np.ndarray], list[float], list[tuple[float, float, float, float]]]:
        """Masks (H, W) uint8 0/255, scores and boxes (image pixels) of the instances of
        ``phrase`` scoring above ``threshold`` (default :data:`SAM3_THRESHOLD`), best first."""
        image = rgb(image)
        text = " ".join((phrase or "").split()).strip(" .").lower()
        if not text:
            raise BadInput("the text to select is empty")
        h, w = image.shape[:2]
        digest = image_digest(image)
        if self._vision is None or self._vision[0] != digest:
            pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
            features = self.model.get_vision_features(pixel_values=pixels.to(self.device))
            self._vision = (digest, features)
        inputs = self.processor(text=text, return_tensors="pt")
        out = self.model(
            vision_embeds=self._vision[1],
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
        )
        result = self.processor.post_process_instance_segmentation(
            out,
            threshold=SAM3_THRESHOLD if threshold is None else threshold,
            mask_threshold=SAM3_MASK_THRESHOLD,
            target_sizes=[(h, w)],
        )[0]
        order = torch.argsort(result["scores"], descending=True).tolist()
        masks = [(result["masks"][i] > 0).to(torch.uint8).cpu().numpy() * 255 for i in order]
        scores = [float(result["scores"][i]) for i in order]
        boxes = [tuple(float(v) for v in result["boxes"][i].tolist()) for i in order]
        return masks, scores, boxes  # type: ignore[return-value]


# -- the job ----------------------------------------------------------------------------------


def _embedding(ctx: JobContext, session: SamSession, key: str, image: np.ndarray) -> None:
    digest = image_digest(image)
    emb = ctx.runner.cache(
        f"sam-embedding:{key}:{digest}", lambda: session.compute_embedding(image), keep=2
    )
    session.use(emb)  # type: ignore[arg-type]


def run_segment(ctx: JobContext, request: SegmentRequest) -> Finished:
    """Select by clicks/box (one mask) or by words (one mask per instance). Extra: "scores"
    (SAM 2's predicted IoU, or the detector's score per instance), "boxes" (the instances'
    boxes; the request's box or none for clicks), "instances". No instance found: no
    images. No prompt at all: only the image's embedding is computed (the Smart select tool
    asks for it when it is picked, so the first click only decodes)."""
    image = rgb(request.image)
    h, w = image.shape[:2]
    text = (request.text or "").strip()
    if text and (request.points or request.box is not None):
        raise BadInput("select by text or by points/box, not both")
    embed_only = not text and not request.points and request.box is None
    check_prompt(request.points, request.box, w, h)
    device = request.device or ctx.runner.device
    folder = find_segment_model(request.model)
    if is_sam3(folder):
        if not text:
            raise BadInput("SAM 3 selects by text here; clicks and boxes need a SAM 2 model")
        return _run_sam3(ctx, folder, image, text, device)
    dino_folder = find_grounding_dino() if text else None
    total = 4 if text else 3
    ctx.progress(0, total, "loading SAM 2")
    key = f"{folder}:{device or ''}"
    session: SamSession = ctx.runner.cache(  # type: ignore[assignment]
        f"sam:{key}", lambda: SamSession.load(folder, device)
    )
    ctx.check()
    if text:
        ctx.progress(1, total, "finding the objects")
        ctx.check()  # a cancel while the event was delivered: no work after it
        detector: TextDetector = ctx.runner.cache(  # type: ignore[assignment]
            f"grounding-dino:{dino_folder}:{device or ''}",
            lambda: TextDetector.load(dino_folder, device),  # type: ignore[arg-type]
        )
        boxes, scores, words = detector.boxes(image, text)
        ctx.check()
        ctx.progress(2, total, "embedding the image")
        ctx.check()  # a cancel while the event was delivered: no work after it
        _embedding(ctx, session, key, image)
        ctx.check()
        masks = []
        for i, b in enumerate(boxes):
            ctx.progress(3, total, f"instance {i + 1} of {len(boxes)}")
            ctx.check()  # a cancel while the event was delivered: no work after it
            masks.append(session.decode(box=b))
            ctx.check()
        ctx.progress(total, total)
        meta = [
            {"segment": "text", "text": text, "label": lab, "score": s}
            for lab, s in zip(words, scores, strict=True)
        ]
        extra = {"scores": scores, "boxes": boxes, "labels": words, "instances": len(masks)}
        return ctx.finished(masks, meta, extra)
    ctx.progress(1, total, "embedding the image")
    ctx.check()  # a cancel while the event was delivered: no work after it
    _embedding(ctx, session, key, image)
    ctx.check()
    if embed_only:
        ctx.progress(total, total)
        return ctx.finished([], [], {"scores": [], "boxes": [], "instances": 0})
    ctx.progress(2, total, "selecting")
    ctx.check()  # a cancel while the event was delivered: no work after it
    points = [(float(x), float(y)) for x, y, _ in request.points]
    labels = [int(v) for _, _, v in request.points]
    mask, score = session.decode_with_score(points, labels, request.box)
    ctx.progress(total, total)
    boxes = [tuple(request.box)] if request.box is not None else []
    meta = [{"segment": "prompt", "points": len(points), "box": request.box is not None}]
    return ctx.finished([mask], meta, {"scores": [score], "boxes": boxes, "instances": 1})


def _run_sam3(
    ctx: JobContext, folder: Path, image: np.ndarray, text: str, device: str | None
) -> Finished:
    ctx.progress(0, 2, "loading SAM 3")
    segmenter: Sam3Segmenter = ctx.runner.cache(  # type: ignore[assignment]
        f"sam3:{folder}:{device or ''}", lambda: Sam3Segmenter.load(folder, device)
    )
    ctx.check()
    ctx.progress(1, 2, "finding the objects")
    ctx.check()  # a cancel while the event was delivered: no work after it
    masks, scores, boxes = segmenter.segment(image, text)
    ctx.progress(2, 2)
    meta = [{"segment": "text", "text": text, "model": "sam3", "score": s} for s in scores]
    extra = {"scores": scores, "boxes": boxes, "labels": [text] * len(masks)}
    return ctx.finished(masks, meta, {**extra, "instances": len(masks)})
