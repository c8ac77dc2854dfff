"""Generation metadata: the AUTOMATIC1111 ``parameters`` text and Studio's JSON chunk.

The A1111 text (what A1111, ComfyUI exporters, Civitai and most viewers read and write)::

    a photo of a cat, <lora:detail:0.6>
    Negative prompt: blurry, lowres
    Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, ...

Prompt lines come first, then lines after ``Negative prompt:``, then one line of
``Key: value`` pairs (values with commas are JSON-quoted). LoRAs live in the prompt as
``<lora:name:weight>`` tags. In the dicts used here they are split out into
``loras: [{"name", "weight"}]`` and the prompt is kept without them, so
``parse_parameters(format_parameters(info))`` gives back ``info``'s fields.

Studio also writes a ``studio`` JSON chunk: the same dict plus the full request. numpy/stdlib
only (core layer).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from studio import __version__

# From AUTOMATIC1111 modules/infotext_utils.py: key, then a quoted or unquoted value.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_LORA = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
_RE_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")

# dict key -> A1111 label, in A1111's order. Keys not listed use "Key name" <-> "key_name".
_LABELS = {
    "steps": "Steps",
    "sampler": "Sampler",
    "schedule_type": "Schedule type",
    "cfg_scale": "CFG scale",
    "seed": "Seed",
    "size": "Size",
    "model_hash": "Model hash",
    "model": "Model",
    "denoising_strength": "Denoising strength",
    "clip_skip": "Clip skip",
    "distilled_cfg_scale": "Distilled CFG Scale",  # Forge: FLUX's guidance-embedding scale
    "ti_hashes": "TI hashes",  # textual inversions: "name: sha256[:12], ..."
    "lora_hashes": "Lora hashes",  # A1111's Lora extension: "name: hash[:12], ..."
    "hires_cfg_scale": "Hires CFG Scale",
}
_INT_KEYS = {"steps", "seed", "clip_skip", "width", "height", "hires_steps", "batch_size"}
_FLOAT_KEYS = {
    "cfg_scale",
    "denoising_strength",
    "hires_upscale",
    "hires_cfg_scale",
    "mask_blur",
    "distilled_cfg_scale",
}
# Keys that are structure, not a "Key: value" pair on the parameters line.
_STRUCT = {"prompt", "negative_prompt", "width", "height", "loras", "controlnets", "request"}


def _key_of(label: str) -> str:
    for k, v in _LABELS.items():
        if v.lower() == label.strip().lower():
            return k
    return re.sub(r"\W+", "_", label.strip().lower()).strip("_")


def _label_of(key: str) -> str:
    return _LABELS.get(key) or key.replace("_", " ").capitalize()


def _num(v: float | int) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _quote(v: str) -> str:
    return json.dumps(v, ensure_ascii=False) if ("," in v or ":" in v or '"' in v) else v


def lora_tag(name: str, weight: float) -> str:
    return f"<lora:{name}:{_num(float(weight))}>"


def format_parameters(info: dict) -> str:
    """The A1111 ``parameters`` text for ``info`` (keys as produced by request_metadata or
    parse_parameters)."""
    prompt = str(info.get("prompt") or "")
    tags = [lora_tag(lo["name"], lo.get("weight", 1.0)) for lo in info.get("loras") or ()]
    tags = [t for t in tags if t not in prompt]
    if tags:
        prompt = ", ".join([p for p in (prompt,) if p] + tags)
    lines = [prompt]
    if info.get("negative_prompt"):
        lines.append(f"Negative prompt: {info['negative_prompt']}")
    pairs: list[str] = []
    items = dict(info)
    if items.get("width") and items.get("height"):
        items["size"] = f"{items['width']}x{items['height']}"
    _split_schedule_type(items)
    ordered = [k for k in _LABELS if k in items] + [
        k for k in items if k not in _LABELS and k not in _STRUCT and k != "version"
    ]
    if "version" in items:
        ordered.append("version")
    for k in ordered:
        v = items[k]
        if v is None or v == "" or isinstance(v, dict | list | tuple):
            continue
        text = _num(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
        pairs.append(f"{_label_of(k)}: {_quote(text)}")
    for i, c in enumerate(info.get("controlnets") or ()):
        desc = ", ".join(
            f"{label}: {_num(c[k]) if isinstance(c[k], float) else c[k]}"
            for k, label in (
                ("kind", "Module"),
                ("model", "Model"),
                ("weight", "Weight"),
                ("start", "Guidance Start"),
                ("end", "Guidance End"),
            )
            if k in c
        )
        pairs.append(f"ControlNet {i}: {json.dumps(desc)}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def split_loras(prompt: str) -> tuple[str, list[dict]]:
    """Take ``<lora:name:w>`` tags out of a prompt: (clean prompt, [{"name", "weight"}])."""
    loras = []
    for m in _RE_LORA.finditer(prompt):
        try:
            weight = float(m.group(3)) if m.group(3) else 1.0
        except ValueError:
            weight = 1.0
        loras.append({"name": m.group(2).strip(), "weight": weight})
    clean = _RE_LORA.sub("", prompt)
    clean = re.sub(r"\s*,(\s*,)+", ",", clean)  # ", ," left where a tag was
    clean = re.sub(r"[ \t]+", " ", clean).strip().strip(",").strip()
    return clean, loras


def _typed(key: str, value: str):
    try:
        if key in _INT_KEYS:
            return int(value)
        if key in _FLOAT_KEYS:
            return float(value)
    except ValueError:
        pass
    return value


def parse_parameters(text: str) -> dict:
    """Parse an A1111 ``parameters`` text into a dict (see module doc). Unknown keys are kept
    as snake_case strings (e.g. ``"Clip skip: 2"`` -> ``clip_skip: 2``)."""
    text = (text or "").strip()
    *lines, last = text.split("\n") if text else [""]
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    clean, loras = split_loras("\n".join(prompt).strip())
    out: dict = {"prompt": clean, "negative_prompt": "\n".join(negative).strip()}
    if loras:
        out["loras"] = loras
    controlnets = []
    for label, raw in _RE_PARAM.findall(last):
        value = raw.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = value[1:-1]
        key = _key_of(label)
        if key == "size":
            m = _RE_SIZE.match(value)
            if m:
                out["width"], out["height"] = int(m.group(1)), int(m.group(2))
                continue
        if re.fullmatch(r"controlnet_\d+", key):
            controlnets.append(_parse_controlnet(value))
            continue
        out[key] = _typed(key, value)
    if controlnets:
        out["controlnets"] = controlnets
    _merge_schedule_type(out)
    return out


def append_parameters(source: str | None, extra: str) -> str:
    """The A1111 ``parameters`` text ``source`` with ``extra`` (``"Key: value, ..."``) added to
    its key/value line, or on a line of its own when the last line is not one (A1111 reads the
    last line as key/values only when it holds at least 3 pairs); ``extra`` alone when there is
    no source text. Postprocessing (upscale, face restoration) writes its fields this way."""
    if not source or not source.strip():
        return extra
    lines = source.rstrip("\n").split("\n")
    if len(_RE_PARAM.findall(lines[-1])) >= 3:
        lines[-1] = lines[-1].rstrip().rstrip(",") + ", " + extra
    else:
        lines.append(extra)
    return "\n".join(lines)


def append_studio_record(source: str | None, key: str, info: dict) -> dict:
    """Studio's JSON metadata ``source`` (if it parses to an object) with ``info`` appended to
    the list under ``key`` (``upscales``, ``face_restorations``)."""
    data: dict = {}
    if source:
        try:
            loaded = json.loads(source)
            if isinstance(loaded, dict):
                data = loaded
        except ValueError:
            data = {}
    data[key] = [*data.get(key, []), info]
    return data


def _merge_schedule_type(out: dict) -> None:
    """A1111 >= 1.9 writes the schedule apart from the sampler ("Sampler: DPM++ 2M SDE,
    Schedule type: Exponential"); Studio's sampler names carry it ("DPM++ 2M SDE
    Exponential"), so the sampler read from such a text is that name, read as A1111 reads it
    (``studio.core.sampler_names.compose``: "Automatic" is the sampler's own default, DDIM /
    PLMS / UniPC ignore the field). ``schedule_type`` stays as written."""
    from studio.core.sampler_names import compose

    sampler, schedule = out.get("sampler"), out.get("schedule_type")
    if isinstance(sampler, str) and isinstance(schedule, str) and sampler.strip():
        out["sampler"] = compose(sampler, schedule, infotext=True)


def _split_schedule_type(items: dict) -> None:
    """The reverse for writing: with a ``schedule_type`` in ``items`` (what Studio's metadata
    and A1111 >= 1.9 texts carry), "Sampler" is the sampler without it and "Schedule type"
    says it (the written one when it reads back as the same name, e.g. "Automatic")."""
    from studio.core.sampler_names import compose, infotext_fields

    sampler, schedule = items.get("sampler"), items.get("schedule_type")
    if not isinstance(sampler, str):
        items.pop("schedule_type", None)  # no sampler (a LaMa inpaint): no schedule either
        return
    if not schedule:
        return
    base, label = infotext_fields(sampler)
    if isinstance(schedule, str) and compose(base, schedule, infotext=True) == sampler:
        label = schedule
    items["sampler"], items["schedule_type"] = base, label


def _parse_controlnet(desc: str) -> dict:
    names = {
        "module": "kind",
        "model": "model",
        "weight": "weight",
        "guidance_start": "start",
        "guidance_end": "end",
    }
    c: dict = {}
    for label, raw in _RE_PARAM.findall(desc):
        key = names.get(_key_of(label), _key_of(label))
        value = raw.strip()
        if key in ("weight", "start", "end"):
            try:
                c[key] = float(value)
                continue
            except ValueError:
                pass
        c[key] = value
    return c


def _request_dict(request) -> dict:
    """A JSON-able dict of a request dataclass (arrays become their shape)."""

    def conv(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            return {"shape": list(v.shape)}
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        return v

    return conv(request)


_LORA_HASHES: dict[tuple[str, int, int], str | None] = {}


def lora_hash(path: str | os.PathLike) -> str | None:
    """A LoRA's hash as A1111's Lora extension computes it (``network.NetworkOnDisk``): the
    file's ``sshs_model_hash`` metadata, else for a .safetensors file the sha256 of everything
    after its header (``hashes.addnet_hash_safetensors``, kohya's hash, Civitai's AutoV3), else
    the sha256 of the whole file. Full hex; None when the file can't be read. Cached per file
    (path, size, mtime) for the process."""
    import hashlib

    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _LORA_HASHES:
        return _LORA_HASHES[key]
    digest = hashlib.sha256()
    value: str | None = None
    try:
        with open(path, "rb") as f:
            if str(path).lower().endswith(".safetensors"):
                n = int.from_bytes(f.read(8), "little")
                header = f.read(n) if n < 100_000_000 else b""
                try:
                    meta = json.loads(header or b"{}").get("__metadata__") or {}
                except (ValueError, AttributeError):
                    meta = {}
                value = meta.get("sshs_model_hash") if isinstance(meta, dict) else None
                f.seek(8 + n)
            if not value:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                value = digest.hexdigest()
    except OSError:
        value = None
    _LORA_HASHES[key] = value
    return value


def lora_hashes(loras) -> str | None:
    """A1111's ``Lora hashes`` value for ``loras`` (LoraSpec-like: ``path``): "name: hash12,
    ..." with each name as the prompt's tag names it (the file's stem, ":" and "," removed)
    and the first 12 hex digits of :func:`lora_hash` (A1111's ``shorthash``)."""
    parts = []
    for lo in loras or ():
        h = lora_hash(lo.path)
        name = os.path.splitext(os.path.basename(lo.path))[0].replace(":", "").replace(",", "")
        if h and name:
            parts.append(f"{name}: {h[:12]}")
    return ", ".join(parts) or None


def request_metadata(
    request,
    seed: int,
    model_name: str,
    sampler: str | None = None,
    model_hash: str | None = None,
    ran_loras=None,
) -> dict:
    """The metadata dict for one generated image (written as the A1111 text via
    format_parameters and as the ``studio`` JSON chunk). ``seed`` is this image's seed.
    ``ran_loras``: the LoRAs that ran (the request's plus the prompt's ``<lora:>`` tags;
    default the request's), hashed in ``lora_hashes``; ``loras`` lists the request's."""
    from studio.core.sampler_names import infotext_fields

    get = lambda name, default=None: getattr(request, name, default)  # noqa: E731
    info: dict = {
        "prompt": get("prompt", ""),
        "negative_prompt": get("negative_prompt", ""),
        "steps": get("steps"),
        "sampler": sampler or get("scheduler") or "Default",
        "cfg_scale": float(get("guidance", 0.0)),
        "seed": int(seed),
        "width": get("width"),
        "height": get("height"),
        "model": model_name,
    }
    schedule = infotext_fields(info["sampler"])[1]
    if schedule:
        info["schedule_type"] = schedule
    if model_hash:
        info["model_hash"] = model_hash
    if (get("clip_skip") or 1) > 1:
        info["clip_skip"] = int(request.clip_skip)
    if get("init_image") is not None and hasattr(request, "strength"):
        info["denoising_strength"] = float(request.strength)
    if get("mask") is not None and get("mask_padding") is not None:
        info["mask_padding"] = request.mask_padding
    loras = get("loras") or ()
    if loras:
        info["loras"] = [
            {"name": os.path.splitext(os.path.basename(lo.path))[0], "weight": float(lo.weight)}
            for lo in loras
        ]
    hashes = lora_hashes(ran_loras if ran_loras is not None else loras)
    if hashes:
        info["lora_hashes"] = hashes
    controls = get("controls") or ()
    if controls:
        info["controlnets"] = [
            {
                "kind": c.kind,
                "model": c.model,
                "weight": float(c.weight),
                "start": float(c.start),
                "end": float(c.end),
            }
            for c in controls
        ]
    info["version"] = f"Studio {__version__}"
    req = _request_dict(request)
    req["seed"] = int(seed)
    info["request"] = req
    return info


def read_metadata(path: str | os.PathLike) -> dict:
    """Generation metadata of an image made by Studio or AUTOMATIC1111 (PNG text chunks or
    JPEG/WebP EXIF UserComment). Studio's JSON wins where both have a field; ``source`` says
    which was found ("studio", "a1111" or None) and ``parameters`` keeps the raw text.
    Raises BadInput if the file isn't a readable image."""
    from studio.core.imageio import read_text_chunks

    chunks = read_text_chunks(path)
    out: dict = {}
    source = None
    text = chunks.get("parameters")
    if text:
        out.update(parse_parameters(text))
        out["parameters"] = text
        source = "a1111"
    raw = chunks.get("studio")
    if raw:
        try:
            studio = json.loads(raw)
        except json.JSONDecodeError:
            studio = None
        if isinstance(studio, dict):
            out.update(studio)
            source = "studio"
    out["source"] = source
    return out
