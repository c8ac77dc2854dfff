"""The Generate panel's state, without widgets: model, prompts, sampling settings, source
and size, LoRAs (file, weight), the external VAE, clip skip, the weights' dtype and the
memory plan's overrides (``quant``, ``offload``; "" = the planner decides), the sampler as
A1111 >= 1.9 shows it (``sampler`` + ``schedule_type``, composed into ``scheduler``, the name
the engine takes) and A1111's Hires. fix (``hires*``: a second, upscaled img2img pass of
txt2img on SD 1.x, SD 2.x and SDXL). Properties
persist themselves through the typed settings (``studio.ui.properties``) and ``request()``
turns the state plus the document's inputs into a ``GenerateRequest``, so what Generate sends
is testable without a window.

The memory plan shown for the chosen model (``plan_text``) comes from the torch-free planner
(``studio.engine.diffusion.shared.memory_models``) and the device the engine thread probed at
start-up (``set_device``: ``Worker.device_info``); the overrides apply to the flow families
(FLUX.1, FLUX.2, Z-Image, SD 3.5, Qwen-Image) only.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.core import sampler_names as vocab
from studio.engine import diffusion as planner

if TYPE_CHECKING:
    from studio.engine.diffusion.shared.memory import Plan
    from studio.engine.diffusion.shared.memory_models import ModelPlanInput
from studio.engine.jobs import GenerateRequest, HiresFix, LoraSpec
from studio.ui.properties import PanelModel, Property

MAX_SEED = 2**53 - 1  # seeds are exact integers in a double spin box up to here
RANDOM_SEEDS = 2**32  # random seeds are 32-bit, as AUTOMATIC1111 and `studio generate` draw them
DTYPES = ("", "float16", "bfloat16", "float32")  # "" = auto (the family's, for the device)
QUANTS = ("", *planner.WEIGHT_FORMATS)  # "" = auto (the memory planner decides)
OFFLOADS = ("", *planner.OFFLOADS)
# A1111's infotext keys of Hires. fix (any of them present: the image was made with it).
HIRES_KEYS = ("hires_upscale", "hires_resize", "hires_steps", "hires_upscaler")
# Hires fields the panel shows no widget for: pasted, they are kept for the second pass
# (``GenerateModel.hires_pass``) until Hires. fix is turned off or another text is pasted.
HIRES_PASS_LABELS = {
    "resize": "Hires resize",
    "sampler": "Hires sampler",
    "prompt": "Hires prompt",
    "negative_prompt": "Hires negative prompt",
    "guidance": "Hires CFG Scale",
}


def lora_name(ref: str) -> str:
    """What a LoRA row shows and A1111's ``<lora:name:w>`` calls it: the file's stem."""
    return Path(ref).stem if Path(ref).suffix else ref


def find_lora(name: str) -> str | None:
    """An installed LoRA's path by name (the model folders and imports), or None."""
    try:
        from studio.engine.models import find_lora as find  # torch-free

        path = find(name)
    except Exception:  # noqa: BLE001 - a broken models folder: treated as not installed
        return None
    return str(path) if path is not None else None


def sampler_parts(name: str) -> tuple[str, str]:
    """(sampler, schedule type) the Sampler and Schedule type combos show for a Studio sampler
    name: "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); a plain name is "Automatic" where that
    is what it means ("Euler", "DDIM"), else the schedule A1111 writes for it ("DPM++ 2M",
    whose Automatic is Karras, -> "Uniform"); "" (the model's default) -> ("", "Automatic")."""
    base, label = vocab.split_schedule(name)
    if not base or label is not None:
        return base, label or vocab.AUTOMATIC
    if vocab.compose(base, vocab.AUTOMATIC) == base:
        return base, vocab.AUTOMATIC
    return base, vocab.infotext_fields(base)[1] or vocab.AUTOMATIC


def generation_size(side: int, multiple: int = 8) -> int:
    """The model's size for a region side: the nearest multiple of ``multiple`` (the model
    family's ``size_multiple``: 8 for SD, 16 for SD 3.5, Z-Image, FLUX, Qwen-Image; a side
    halfway between two rounds up), 64..2048. Results are resized to the exact region, so no
    strip of it stays un-generated."""
    m = max(1, int(multiple))
    return max(64, min(2048, max(m, int(side / m + 0.5) * m)))  # halves round up: 104 -> 112


def size_multiple(family: str | None) -> int:
    """What the sides of family ``family``'s models must be multiples of (its descriptor's
    ``size_multiple``); 8, the SD rule, when the family is unknown."""
    if not family:
        return 8
    try:
        from studio.engine.diffusion.families import family as descriptor  # torch-free

        return int(descriptor(family).size_multiple)
    except Exception:  # noqa: BLE001 - a family the registry doesn't know
        return 8


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W, C uint8) at ``size`` (w, h), Lanczos; itself when it already is."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image

    mode = "RGBA" if image.shape[2] == 4 else "RGB"
    return np.asarray(Image.fromarray(image, mode).resize(size, Image.Resampling.LANCZOS))


class GenerateModel(PanelModel):
    """What the Generate panel shows and sends. ``model`` and the recent-models list are
    saved when a job is submitted (``remember_model``), the rest as it changes."""

    model = Property("")
    prompt = Property("")
    negative_prompt = Property("")
    steps = Property(20, setting="steps")
    guidance = Property(7.0, setting="guidance")
    seed = Property(0, kind=int)
    random_seed = Property(True)
    width = Property(512, setting="width")
    height = Property(512, setting="height")
    match_region = Property(True)
    count = Property(1)
    scheduler = Property("", setting="scheduler")  # "" = the model's default
    sampler = Property("")  # the Sampler combo: a sampler without schedule ("" = default)
    schedule_type = Property(vocab.AUTOMATIC)  # A1111 >= 1.9's "Schedule type"
    sampler_note = Property("")  # one line: why sampler + schedule type can't be built
    hires = Property(False)  # A1111's Hires. fix on
    # Its values are remembered between runs; whether it is on is not (as in A1111).
    hires_scale = Property(2.0, setting="hires_scale")  # "Upscale by"
    hires_steps = Property(0, setting="hires_steps")  # "Hires steps": 0 = the first pass's
    hires_denoise = Property(0.7, setting="hires_denoise")  # the second pass's (A1111's default)
    hires_upscaler = Property(
        "Latent", setting="hires_upscaler"
    )  # Latent*, Lanczos, Nearest, a model
    source = Property("txt2img")  # "txt2img" | "img2img" | "inpaint"
    strength = Property(0.75, setting="strength")
    preview = Property("latent", setting="preview")
    vae = Property("", setting="vae")  # "" = the model's own
    clip_skip = Property(1, setting="clip_skip")
    dtype = Property("", setting="dtype")  # one of DTYPES
    quant = Property("", setting="quant")  # one of QUANTS (flow families)
    offload = Property("", setting="offload")  # one of OFFLOADS (flow families)
    # ((path or name, weight), ...): a name is a LoRA not installed (from pasted parameters)
    loras = Property((), kind=tuple)

    def __init__(self, settings=None, parent=None, lookup: Callable | None = None) -> None:
        super().__init__(settings, parent)
        self.lookup = lookup or find_lora  # LoRA name -> path (None: not installed)
        if settings is not None and settings.model:
            self.model = settings.model
        if settings is not None and settings.loras:
            try:
                self.loras = tuple((str(r), float(w)) for r, w in json.loads(settings.loras))
            except (ValueError, TypeError):
                pass  # a damaged setting: no LoRAs
        self.changed.connect(self._save_loras)
        self._composing = False
        self.sampler, self.schedule_type = sampler_parts(self.scheduler)
        self.changed.connect(self._sync_sampler)
        #: Pasted second-pass settings the panel has no widget for (``HiresFix`` fields:
        #: resize, sampler, prompt, negative_prompt, guidance).
        self.hires_pass: dict = {}
        self.changed.connect(self._sync_hires_pass)
        self.device_info: dict | None = None  # the engine's device probe (None: not yet)
        self._needs: dict[str, ModelPlanInput | None] = {}

    # -- memory plan -------------------------------------------------------------------------
    def set_device(self, info: dict | None) -> None:
        """The job device and its free memory (``Worker.device_info``); the plan follows."""
        self.device_info = dict(info) if info else None
        self.changed.emit("device", self.device_info)

    def forget_models(self) -> None:
        """Models were installed or removed: look their families and sizes up again."""
        self._needs.clear()
        self.changed.emit("device", self.device_info)

    def model_needs(self) -> ModelPlanInput | None:
        """What the planner knows of ``model`` (family, sizes), read once per reference."""
        ref = self.model.strip()
        if ref not in self._needs:
            try:
                self._needs[ref] = planner.model_needs(ref)
            except Exception:  # noqa: BLE001 - an unreadable model: no plan, not a crash
                self._needs[ref] = None
        return self._needs[ref]

    def family(self) -> str | None:
        found = self.model_needs()
        return found.family if found else None

    def is_flow(self) -> bool:
        """Whether the model takes the quant/offload overrides (a flow family)."""
        return planner.is_flow_family(self.family())

    def overrides(self) -> tuple[str | None, str | None]:
        """(quant, offload) for the request and the plan: None = the planner decides; always
        None for the SD families."""
        if not self.is_flow():
            return None, None
        quant = self.quant if self.quant in QUANTS[1:] else None
        offload = self.offload if self.offload in OFFLOADS[1:] else None
        return quant, offload

    def plan(self) -> Plan | None:
        """The plan for the model at the current size on the probed device (None: the CPU, the
        device not probed yet, the model's family unknown). Raises BadInput for an override
        the model can't take (a different quant than its GGUF file's)."""
        info = self.device_info
        if not info or info.get("device") == "cpu" or info.get("free_gib") is None:
            return None
        if self.model_needs() is None:
            return None
        quant, offload = self.overrides()
        pixels = int(self.width) * int(self.height)
        return planner.plan_for_model(self.model.strip(), float(info["free_gib"]), pixels, quant, offload)  # fmt: skip

    def plan_text(self) -> tuple[str, str]:
        """(the plan line, its tooltip): "Plan: model offload, fp8, 10.2 GiB of 11.2 GiB,
        fits", "CPU: no memory plan, runs in float32 on the CPU", ..."""
        info = self.device_info
        if info is None:
            return "Plan: shown once the engine has started", ""
        if info.get("device") == "cpu":
            return planner.plan_line(None, "cpu"), "No GPU was found: jobs run on the CPU."
        where = f"{info.get('name', info.get('device'))}"
        if info.get("free_gib") is not None:
            where += f", {float(info['free_gib']):.1f} GiB free at start-up"
        if not self.model.strip():
            return "Plan: choose a model", where
        if self.model_needs() is None:
            return "Plan: decided when the model loads (its family is not known here)", where
        try:
            plan = self.plan()
        except Exception as e:  # noqa: BLE001 - BadInput: the override does not apply
            return f"Plan: {getattr(e, 'message', str(e))}", where
        if plan is None:
            return "Plan: decided when the model loads (free memory unknown)", where
        tip = "\n".join([plan.describe(), f"Planned for {where}.", *plan.pipeline_calls()])
        return planner.plan_line(plan), tip

    # -- sampler + schedule type -------------------------------------------------------------
    def _sync_sampler(self, name: str, value: object) -> None:
        """``scheduler`` and the (``sampler``, ``schedule_type``) pair follow each other."""
        if self._composing or name not in ("scheduler", "sampler", "schedule_type"):
            return
        self._composing = True
        try:
            if name == "scheduler":
                self._split(str(value))
            else:
                self._compose()
        finally:
            self._composing = False

    def _split(self, name: str) -> None:
        try:
            same = bool(self.sampler) and self.composed() == name
        except ValueError:
            same = False
        if not same:  # keeps the user's "Uniform" where "Automatic" would compose the same
            self.sampler, self.schedule_type = sampler_parts(name)
        self.sampler_note = ""

    def composed(self) -> str:
        """The engine's name for ``sampler`` + ``schedule_type`` ("" for the default); raises
        ValueError with one line for a pair the engine refuses."""
        if not self.sampler:
            return ""
        try:
            return planner.canonical_name(self.sampler, self.schedule_type or None)
        except Exception as e:  # noqa: BLE001 - BadInput: a pair diffusers can't build
            raise ValueError(getattr(e, "message", None) or str(e)) from e

    def _compose(self) -> None:
        try:
            self.scheduler, self.sampler_note = self.composed(), ""
        except ValueError as e:
            self.scheduler = vocab.compose(self.sampler, self.schedule_type)
            self.sampler_note = f"Sampler not usable: {e}"

    def show_schedule(self, label: object) -> None:
        """Show a pasted "Schedule type" (e.g. "Automatic") where it builds ``scheduler``."""
        chosen = vocab.schedule_label(label) if isinstance(label, str) else None
        base = sampler_parts(self.scheduler)[0]
        if not chosen or not base:
            return
        try:
            ok = planner.canonical_name(base, chosen) == self.scheduler
        except Exception:  # noqa: BLE001 - refused: keep what the name shows
            ok = False
        if ok:
            self._composing = True
            try:
                self.sampler, self.schedule_type = base, chosen
            finally:
                self._composing = False

    # -- Hires. fix -------------------------------------------------------------------------
    def hires_reason(self) -> str:
        """Why Hires. fix can't run for this model and source ("": it can). The engine runs
        it on the SD families' txt2img (``engine.diffusion.hires``)."""
        if self.is_flow():
            try:
                label = planner.family_label(self.family() or "")
            except Exception:  # noqa: BLE001 - a family the planner has no row for
                label = self.family() or "this model"
            return f"Hires. fix runs on SD 1.x, SD 2.x and SDXL models, not {label}"
        if self.source != "txt2img":
            return "Hires. fix is a second pass of txt2img; img2img and inpainting take none"
        return ""

    def hires_spec(self) -> HiresFix | None:
        """The request's ``hires``: None when off or when it can't run (``hires_reason``)."""
        if not self.hires or self.hires_reason():
            return None
        return HiresFix(
            scale=float(self.hires_scale),
            steps=max(0, int(self.hires_steps)),
            denoise=float(self.hires_denoise),
            upscaler=self.hires_upscaler.strip() or "Latent",
            **self.hires_pass,
        )

    def _sync_hires_pass(self, name: str, value: object) -> None:
        """Turning Hires. fix off forgets the pasted second-pass settings; choosing an
        "Upscale by" replaces a pasted "Hires resize" (A1111 takes one or the other)."""
        if name == "hires" and not value:
            self.hires_pass = {}
        elif name == "hires_scale":
            self.hires_pass.pop("resize", None)

    def pasted_hires_pass(self, meta: dict) -> tuple[dict, list[str]]:
        """The second-pass settings of A1111's ``Hires resize`` ("WxH"), ``Hires sampler`` (with
        ``Hires schedule type``), ``Hires prompt``, ``Hires negative prompt`` and ``Hires CFG
        Scale``, as ``HiresFix`` fields, and a note for each that can't be used."""
        taken: dict = {}
        notes: list[str] = []
        resize = meta.get("hires_resize")
        if isinstance(resize, str) and resize.strip():
            try:
                w, h = (int(v) for v in resize.lower().split("x"))
                if w < 0 or h < 0 or not (w or h):
                    raise ValueError(resize)
                taken["resize"] = (w, h)
            except ValueError:
                notes.append(f"Hires resize {resize!r} not taken: it is not WIDTHxHEIGHT")
        sampler = meta.get("hires_sampler")
        if isinstance(sampler, str) and sampler.strip() and sampler.strip() != "Use same sampler":
            schedule = meta.get("hires_schedule_type")
            if isinstance(schedule, str) and schedule.strip():
                sampler = vocab.compose(sampler.strip(), schedule.strip(), infotext=True)
            name, note = self.pasted_sampler({"sampler": sampler})
            if name:
                taken["sampler"] = name
            elif note:
                notes.append(f"Hires {note[0].lower()}{note[1:]}")
        for key, field in (
            ("hires_prompt", "prompt"),
            ("hires_negative_prompt", "negative_prompt"),
        ):
            text = meta.get(key)
            if isinstance(text, str) and text.strip():
                taken[field] = text
        if isinstance(meta.get("hires_cfg_scale"), int | float):
            taken["guidance"] = float(meta["hires_cfg_scale"])
        return taken, notes

    def apply_hires(self, meta: dict) -> list[str]:
        """A1111's Hires fields (``Hires upscale``, ``Hires steps``, ``Hires upscaler``, with
        ``Denoising strength`` the second pass's) turn Hires. fix on with their values; a text
        without them turns it off, and its ``Denoising strength`` is img2img's strength."""
        notes: list[str] = []
        denoise = meta.get("denoising_strength")
        if not any(k in meta for k in HIRES_KEYS):
            self.hires = False
            if isinstance(denoise, int | float):
                self.strength = float(denoise)
            return notes
        self.hires = True
        if isinstance(meta.get("hires_upscale"), int | float):
            self.hires_scale = float(meta["hires_upscale"])
        if isinstance(meta.get("hires_steps"), int | float):
            self.hires_steps = max(0, int(meta["hires_steps"]))
        upscaler = meta.get("hires_upscaler")
        if isinstance(upscaler, str) and upscaler.strip():
            self.hires_upscaler = upscaler.strip()
        if isinstance(denoise, int | float):
            self.hires_denoise = float(denoise)
        taken, refused = self.pasted_hires_pass(meta)
        self.hires_pass = taken  # after the scale: a pasted resize stands
        notes += refused
        if taken:
            names = ", ".join(HIRES_PASS_LABELS[k] for k in taken)
            notes.append(f"{names} taken for the second pass")
        return notes

    def _save_loras(self, name: str, value: object) -> None:
        if name == "loras" and self.settings is not None:
            self.settings.loras = json.dumps([[r, w] for r, w in self.loras])

    # -- LoRAs -------------------------------------------------------------------------------
    def add_lora(self, ref: str, weight: float = 1.0) -> None:
        """Add a LoRA (its path; a name when not installed); one already there takes the
        new weight instead of being added twice."""
        key = lora_name(ref).lower()
        rows = list(self.loras)
        for i, (r, _w) in enumerate(rows):
            if lora_name(r).lower() == key:
                rows[i] = (ref if Path(ref).suffix else r, float(weight))
                break
        else:
            rows.append((ref, float(weight)))
        self.loras = tuple(rows)

    def set_lora_weight(self, index: int, weight: float) -> None:
        rows = list(self.loras)
        if 0 <= index < len(rows):
            rows[index] = (rows[index][0], float(weight))
            self.loras = tuple(rows)

    def remove_lora(self, index: int) -> None:
        rows = list(self.loras)
        if 0 <= index < len(rows):
            del rows[index]
            self.loras = tuple(rows)

    def remember_model(self) -> None:
        s = self.settings
        if s is not None and self.model:
            s.model = self.model
            s.push_recent("recent_models", self.model)

    def size_multiple(self) -> int:
        """The chosen model's side multiple (its family descriptor's ``size_multiple``)."""
        return size_multiple(self.family())

    def match(self, region: tuple[int, int, int, int]) -> None:
        """Take the generation size from the region (when matching it): each side the nearest
        multiple of the model family's size multiple, as the job will run it."""
        if self.match_region and region[2] and region[3]:
            m = self.size_multiple()
            self.width, self.height = generation_size(region[2], m), generation_size(region[3], m)

    def apply_recommended(self, rec: dict, schedulers: list[str]) -> None:
        """A model's defaults (``studio.engine.diffusion.recommended_settings``: the catalog's
        recommended values, the rest from the family: native size, steps, guidance, sampler;
        e.g. 1 step and guidance 0 for the Turbo models, 1024 px for SDXL); an empty ``rec``
        changes nothing."""
        if not rec:
            return
        if isinstance(rec.get("width"), int) and isinstance(rec.get("height"), int):
            self.width, self.height = rec["width"], rec["height"]
        if "steps" in rec:
            self.steps = int(rec["steps"])
        if "guidance" in rec:
            self.guidance = float(rec["guidance"])
        sampler = rec.get("scheduler", "")
        self.scheduler = sampler if sampler in schedulers else ""
        if "strength" in rec:
            self.strength = float(rec["strength"])

    def pasted_sampler(self, meta: dict) -> tuple[str | None, str | None]:
        """(the Studio sampler name of ``meta``'s sampler, None) or (None, a one-line note why
        it can't run here); (None, None) without one. The metadata reader has combined A1111's
        "Sampler" and "Schedule type" already ("DPM2 a" + "Karras" -> "DPM2 a Karras")."""
        sampler = meta.get("sampler")
        if not isinstance(sampler, str) or not sampler.strip():
            return None, None
        try:
            return planner.canonical_name(sampler), None
        except Exception as e:  # noqa: BLE001 - BadInput: unknown, or no diffusers build
            return None, f"Sampler not taken: {getattr(e, 'message', str(e))}"

    def guidance_kind(self) -> str | None:
        """The chosen model's guidance ("cfg", "distilled", "none"; its family descriptor's
        ``guidance_kind``), None when its family is unknown."""
        name = self.family()
        if not name:
            return None
        try:
            from studio.engine.diffusion.families import family as descriptor  # torch-free

            return str(descriptor(name).guidance_kind)
        except Exception:  # noqa: BLE001 - a family the registry doesn't know
            return None

    def apply_parameters(self, meta: dict, schedulers: list[str]) -> list[str]:
        """Take a metadata dict's parameters (studio.core.metadata: prompt, negative_prompt,
        steps, cfg_scale, seed, width, height, sampler, schedule_type, model,
        denoising_strength, the Hires fields: ``apply_hires``); the sampler is taken when it
        is in ``schedulers`` or a name Studio can build (A1111's sampler with its schedule
        type, ComfyUI's names), else left as it is with a note; the Sampler and Schedule type
        combos show it split, the pasted "Schedule type" where it builds the same name.
        ``loras`` (the ``<lora:name:w>`` tags, already taken out of the prompt by the
        metadata reader) replace the LoRA list; ``clip_skip`` ("Clip skip: 2") is taken too.
        Forge's ``Distilled CFG Scale`` is the guidance of a model whose guidance is an input
        of the model (FLUX.1-dev; also when the model's family is unknown: Forge writes it
        for those only), its ``CFG scale`` then stays 1 there. Returns the notes (one line
        each) about what was not taken."""
        notes: list[str] = []
        if isinstance(meta.get("loras"), list | tuple):
            rows = []
            for lo in meta["loras"]:
                if isinstance(lo, dict) and lo.get("name"):
                    name = str(lo["name"])
                    rows.append((self.lookup(name) or name, float(lo.get("weight", 1.0))))
            self.loras = ()
            for ref, weight in rows:
                self.add_lora(ref, weight)
        if isinstance(meta.get("clip_skip"), int | float):
            self.clip_skip = max(1, int(meta["clip_skip"]))
        if "prompt" in meta:
            from studio.core.prompt_syntax import extract_loras

            prompt, tags = extract_loras(str(meta["prompt"]))  # tags the reader left in
            self.prompt = prompt if tags else str(meta["prompt"])
            for tag in tags:
                self.add_lora(self.lookup(tag.name) or tag.name, float(tag.weight))
        if "negative_prompt" in meta:
            self.negative_prompt = str(meta["negative_prompt"])
        if isinstance(meta.get("steps"), int | float):
            self.steps = int(meta["steps"])
        if isinstance(meta.get("cfg_scale"), int | float):
            self.guidance = float(meta["cfg_scale"])
        if isinstance(meta.get("seed"), int | float):
            self.random_seed = False
            self.seed = min(int(meta["seed"]), MAX_SEED)
        if isinstance(meta.get("width"), int) and isinstance(meta.get("height"), int):
            self.match_region = False
            self.width, self.height = meta["width"], meta["height"]
        sampler = meta.get("sampler")
        taken = False
        if isinstance(sampler, str) and sampler in schedulers:
            self.scheduler, taken = sampler, True
        elif isinstance(sampler, str) and sampler.strip():
            name, note = self.pasted_sampler(meta)
            if name is not None:
                self.scheduler, taken = name, True
            elif note:
                notes.append(note)
        if taken:
            self.show_schedule(meta.get("schedule_type"))
        model = meta.get("model")
        if isinstance(model, str) and model:
            self.model = model
        distilled = meta.get("distilled_cfg_scale")
        if isinstance(distilled, int | float) and self.guidance_kind() in ("distilled", None):
            self.guidance = float(distilled)
        notes += self.apply_hires(meta)
        if self.hires and self.hires_reason():
            notes.append(f"Hires. fix not applied: {self.hires_reason()}")
        return notes

    def lora_specs(self) -> tuple[LoraSpec, ...]:
        """The LoRA list as the request's specs; a LoRA not installed (a name from pasted
        parameters) is looked up again, else ValueError with a message for the user."""
        specs = []
        for ref, weight in self.loras:
            path = ref if Path(ref).suffix and Path(ref).expanduser().is_file() else None
            path = path or self.lookup(lora_name(ref))
            if path is None:
                raise ValueError(
                    f"LoRA “{lora_name(ref)}” is not installed: import it in the Models panel "
                    "or put it in the models' loras folder, or remove it from the LoRA list."
                )
            specs.append(LoraSpec(str(path), float(weight)))
        return tuple(specs)

    def next_seed(self) -> int:
        return random.randrange(RANDOM_SEEDS) if self.random_seed else int(self.seed)

    def request(
        self,
        region: tuple[int, int, int, int] | None,
        composite: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        controls: tuple = (),
    ) -> tuple[GenerateRequest, tuple[int, int, int, int]]:
        """The request for this state and the document's inputs, and the region (x, y, w, h)
        its output fills. ``region`` None: an empty document (txt2img makes it).
        ``composite``: the flattened RGBA image; ``mask``: (H, W) uint8 or None. Raises
        ValueError with a message for the user."""
        model = self.model.strip()
        if not model:
            raise ValueError("Choose a model first.")
        width, height = int(self.width), int(self.height)
        region = region or (0, 0, width, height)
        init = crop_mask = None
        if self.source != "txt2img":
            if composite is None:
                raise ValueError("Img2img and inpainting need an image: open or drop one first.")
            x, y, w, h = region
            crop = composite[y : y + h, x : x + w].astype(np.float32)
            a = crop[..., 3:4] / 255.0
            rgb = crop[..., :3] * a + 255.0 * (1.0 - a)  # transparent areas as white
            init = resize(np.ascontiguousarray(rgb.astype(np.uint8)), (width, height))
            if self.source == "inpaint":
                if mask is None:
                    raise ValueError("Paint a mask first (brush, B) to choose what to inpaint.")
                crop_mask = np.ascontiguousarray(mask[y : y + h, x : x + w])
                if (w, h) != (width, height):
                    from PIL import Image

                    crop_mask = np.asarray(Image.fromarray(crop_mask, "L").resize((width, height)))
        if self.sampler_note and not self.is_flow():
            raise ValueError(self.sampler_note)
        hires = self.hires_spec()
        if hires is not None and controls:
            raise ValueError(
                "Hires. fix with ControlNet guides is not supported yet: turn Hires. fix off "
                "or hide the control layers."
            )
        quant, offload = self.overrides()
        request = GenerateRequest(
            hires=hires,
            quant=quant,
            offload=offload,
            loras=self.lora_specs(),
            vae=self.vae.strip() or None,
            clip_skip=max(1, int(self.clip_skip)),
            dtype=self.dtype if self.dtype in DTYPES[1:] else None,
            model=model,
            prompt=self.prompt.strip(),
            negative_prompt=self.negative_prompt.strip(),
            steps=int(self.steps),
            guidance=float(self.guidance),
            seed=self.next_seed(),
            width=width,
            height=height,
            scheduler=self.scheduler or None,
            count=int(self.count),
            init_image=init,
            strength=float(self.strength),
            mask=crop_mask,
            controls=tuple(controls),
            preview=self.preview,
        )
        return request, region
