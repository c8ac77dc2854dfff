"""DreamBooth LoRA training of an SD 1.x/2.x or SDXL UNet: the job handler for
:class:`~studio.engine.jobs.requests.TrainLoraRequest`.

The objective is Algorithm 1 of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
for an image latent x_0 = VAE(x) * scaling_factor, a timestep t ~ U{0..T-1} and noise
eps ~ N(0, I),

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps                  (eq. 4, ``add_noise``)
    L   = || eps - eps_theta(x_t, t, c) ||^2                        (eq. 14, L_simple)

with the target v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 instead of eps for v-prediction
models (Salimans & Ho 2022; ``scheduler.get_velocity``), as the model's scheduler config says.
Only a LoRA (Hu et al. 2021: W' = W + (alpha/r) B A, B = 0 at the start) on the UNet
attention projections ``to_q``/``to_k``/``to_v``/``to_out.0`` is trained; everything else is
frozen. DreamBooth (Ruiz et al. 2023) binds the subject to a rare ``trigger`` token; with
prior preservation (their eq. 2) the loss adds ``prior_weight`` x the same loss on class
images the model itself generated from the class prompt, so the class keeps its prior.

This follows diffusers' ``examples/dreambooth/train_dreambooth_lora.py`` (and the SDXL one):
peft ``LoraConfig(r, lora_alpha=r, init_lora_weights="gaussian")`` through
``unet.add_adapter``, the LoRA parameters in fp32 under mixed precision
(``cast_training_params``), AdamW (bitsandbytes' 8-bit AdamW when asked and installed), the
constant (with warmup) schedule, gradient clipping, and ``save_lora_weights`` of
``convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))``. SDXL gets both text
encoders (penultimate hidden states, concatenated; the pooled ``text_encoder_2`` output as
``text_embeds``) and per-image ``add_time_ids`` (original size, crop top-left, target size;
Podell et al. 2023). Prompts are encoded exactly as generation encodes them
(``diffusion.prompts``: A1111 chunks and weighting), so the LoRA sees at training time the
conditioning it will see when used.

Determinism: the batch of step k and the random draws of step k (latent sample, timesteps,
noise) come from generators seeded by (seed, k) alone, and a checkpoint holds the LoRA, the
optimizer, schedule and scaler states and the RNG states, so a run cancelled at step k and
resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import BadInput, JobCancelled, ModelError, StudioError
from studio.engine.jobs.device import generator_for, is_oom, native_bf16, pick_device
from studio.engine.training import checkpoint as ckpt
from studio.engine.training.data import (
    PreparedImage,
    TrainingPaths,
    batch_for_step,
    instance_prompt,
    prepare_images,
    sidecar_caption,
    training_paths,
)
from studio.engine.training.presets import apply_preset, validate_request

if TYPE_CHECKING:
    from studio.engine.diffusion.families import Family
    from studio.engine.jobs.events import Finished
    from studio.engine.jobs.requests import TrainLoraRequest
    from studio.engine.jobs.runner import JobContext

TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
LOSS_WINDOW = 20  # the "avg" in the progress line: mean of the last N losses
LOSSES_KEPT = 2000  # losses kept in a checkpoint (the log CSV has them all)
CSV_FIELDS = ("step", "loss", "instance_loss", "prior_loss", "lr", "seconds")


def run_train_lora(ctx: JobContext, request: TrainLoraRequest) -> Finished:
    """Job handler for TrainLoraRequest: validate, train, write the LoRA; returns Finished
    (``extra``: path, steps, loss, losses, checkpoints, notes; ``images``: the last sample)."""
    request = apply_preset(request)
    validate_request(request)
    refuse_flow(request.model)
    paths = training_paths(request.out, request.trigger)
    return LoraTrainer(ctx, request, paths).run()


def refuse_flow(model: str, family: Family | None = None) -> None:
    """BadInput in one line for a model training does not support (the flow-matching
    families), decided from the family descriptor without loading the model when possible."""
    if family is None:
        from studio.engine.diffusion.shared.defaults import model_family

        family = model_family(model)
    if family is not None and family.prediction == "flow":
        raise BadInput(
            f"{family.label} models can't be trained yet: training supports SD 1.5 and SDXL "
            "(and SD 2.x)"
        )


def precision(device: torch.device, requested: str | None) -> tuple[torch.dtype, str, str | None]:
    """(frozen weights' dtype, mixed-precision mode "no"|"fp16"|"bf16", a note or None) for
    ``device``: half precision on CUDA (bf16 where native, else fp16) unless "no" was asked,
    fp32 on the CPU and on MPS (autocast there is partial)."""
    if device.type == "cuda":
        mode = requested or ("bf16" if native_bf16(device) else "fp16")
        if mode == "bf16" and not native_bf16(device):
            return torch.float16, "fp16", "bf16 is not native on this GPU: mixed precision fp16"
        dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]
        return dtype, mode, None
    note = None
    if requested not in (None, "no"):
        note = f"{device.type.upper()}: training in fp32 ({requested} needs a CUDA GPU)"
    return torch.float32, "no", note


@dataclass
class _Set:
    """Instance or class images, their buckets, the seed of their batch schedule and their
    cached VAE posteriors (index -> (mean, std))."""

    images: list[PreparedImage]
    buckets: list[tuple[int, int]]
    seed: int
    latents: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class LoraTrainer:
    """One training run (see the module docstring). ``run()`` returns the Finished event."""

    def __init__(self, ctx: JobContext, request: TrainLoraRequest, paths: TrainingPaths) -> None:
        self.ctx = ctx
        self.req = request
        self.paths = paths
        self.notes: list[str] = []
        self.total = int(request.steps)
        self.text_cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.losses: list[float] = []
        self.last_saved = -1
        self.sample: np.ndarray | None = None
        self.vae_offloaded = False

    # -- reporting --------------------------------------------------------------------------
    def note(self, text: str, step: int = 0) -> None:
        self.notes.append(text)
        self.ctx.progress(step, self.total, text)

    # -- set-up -----------------------------------------------------------------------------
    def _load(self) -> None:
        from studio.engine.diffusion.families import recognise_pipe
        from studio.engine.diffusion.shared.loader import (
            load_folder,
            load_single_file,
            resolve_model,
        )

        req = self.req
        choice = pick_device(req.device)
        self.device = choice.device
        self.weight_dtype, self.mixed, note = precision(self.device, req.mixed_precision)
        if note:
            self.note(note)
        resolved = resolve_model(req.model)
        self.resolved = resolved
        # Training needs the memory a cached generation pipeline holds; the trained copy is
        # this job's own (adapters are added to it), never the runner's cached one.
        self.ctx.runner.clear_cache()
        self.ctx.progress(0, self.total, f"Loading {resolved.name}")
        if resolved.kind == "file":
            pipe = load_single_file(resolved.path, "txt2img", self.weight_dtype)
        else:
            pipe = load_folder(resolved.path, self.weight_dtype)
        if not hasattr(pipe, "unet") or not hasattr(pipe, "vae"):
            raise ModelError(f"{resolved.name}: not a Stable Diffusion pipeline")
        family = recognise_pipe(pipe)
        refuse_flow(req.model, family)
        if pipe.unet.config.in_channels != pipe.vae.config.latent_channels:
            raise BadInput(
                f"{resolved.name} is an inpainting model: train on its txt2img base instead"
            )
        self.ctx.check()
        self.pipe, self.family = pipe, family
        self.unet, self.vae = pipe.unet, pipe.vae
        if family.vae_upcast and self.weight_dtype != torch.float32:
            self.vae.to(torch.float32)  # SDXL's VAE overflows in fp16
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction = self.noise_scheduler.config.prediction_type
        if self.prediction not in ("epsilon", "v_prediction"):
            raise BadInput(f"{resolved.name}: cannot train a {self.prediction} model")
        self.text_time = self.unet.config.get("addition_embed_type") == "text_time"
        for module in self._frozen_modules():
            module.requires_grad_(False)
            module.eval()
        self.unet.requires_grad_(False)

    def _frozen_modules(self) -> list[torch.nn.Module]:
        mods = [self.vae]
        mods += [getattr(self.pipe, n) for n in self.family.text_encoders if hasattr(self.pipe, n)]
        return [m for m in mods if isinstance(m, torch.nn.Module)]

    def _resolution(self) -> int:
        if self.req.resolution:
            return int(self.req.resolution)
        from studio.engine.diffusion.shared.defaults import recommended_settings

        rec = recommended_settings(self.req.model)
        return int(rec.get("width") or self.family.default_size[0])

    def _prompts(self) -> list[str]:
        req = self.req
        out = []
        for p in req.images:
            caption = req.caption(p) or sidecar_caption(p)
            out.append(instance_prompt(req.trigger.strip(), caption, req.class_prompt))
        return out

    # -- text ---------------------------------------------------------------------------------
    def _encoders(self) -> list[tuple[str, torch.nn.Module, object]]:
        out = []
        for name in self.family.text_encoders:
            enc = getattr(self.pipe, name, None)
            tok = getattr(self.pipe, name.replace("text_encoder", "tokenizer"), None)
            if enc is not None and tok is not None:
                out.append((name, enc, tok))
        if not out:
            raise ModelError(f"{self.resolved.name}: no text encoder to condition on")
        return out

    @torch.no_grad()
    def _encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(hidden states (1, 77k, D), pooled (1, P) or None) for ``text``, as generation
        encodes a prompt (``prompts.tokenize_chunks``/``encode_chunk``, clip skip 1; SDXL:
        both encoders concatenated on the feature axis, pooled from ``pooled_from``)."""
        from studio.engine.diffusion.sd.prompts import encode_chunk, tokenize_chunks

        parts, pooled = [], None
        for name, enc, tok in self._encoders():
            device = next(enc.parameters()).device
            zs = []
            for k, chunk in enumerate(tokenize_chunks(tok, text)):
                z, p = encode_chunk(enc, chunk, self.family, 1, device)
                zs.append(z)
                if k == 0 and name == self.family.pooled_from:
                    pooled = p
            parts.append(torch.cat(zs, dim=1))
        embeds = torch.cat([p.to(self.device) for p in parts], dim=-1).to(self.weight_dtype)
        if pooled is not None:
            pooled = pooled.to(self.device, self.weight_dtype)
        return embeds, pooled

    def _text(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if text in self.text_cache:
            return self.text_cache[text]
        out = self._encode(text)
        if self.req.cache_text:
            self.text_cache[text] = out
        return out

    def _batch_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        encoded = [self._text(p) for p in prompts]
        longest = max(e.shape[1] for e, _ in encoded)
        embeds = []
        for e, _ in encoded:
            if e.shape[1] < longest:  # pad with empty chunks, as generation pads a negative
                empty = self._text("")[0]
                e = torch.cat([e] + [empty] * ((longest - e.shape[1]) // empty.shape[1]), dim=1)
            embeds.append(e)
        pooled = [p for _, p in encoded]
        pooled_t = torch.cat(pooled, dim=0) if all(p is not None for p in pooled) else None
        return torch.cat(embeds, dim=0), pooled_t

    # -- latents ------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode_image(self, image: PreparedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior N(mean, std^2) of one image (fp32, on the device)."""
        x = torch.from_numpy(np.array(image.pixels, dtype=np.uint8)).permute(2, 0, 1)[None]
        x = x.to(self.device, self.vae.dtype) / 127.5 - 1.0
        dist = self.vae.encode(x).latent_dist
        return dist.mean.float(), dist.std.float()

    def _latent(self, data: _Set, i: int, gen: torch.Generator) -> torch.Tensor:
        """x_0 = (z - shift) * scaling_factor with z ~ the VAE posterior (drawn from ``gen``)."""
        if i in data.latents:
            mean, std = data.latents[i]
        else:
            mean, std = self._encode_image(data.images[i])
        eps = torch.randn(mean.shape, generator=gen, device=gen.device).to(self.device)
        z = mean + std * eps
        cfg = self.vae.config
        shift = getattr(cfg, "shift_factor", None) or 0.0
        return (z - shift) * cfg.scaling_factor

    def _cache_latents(self, data: _Set, what: str) -> None:
        n = len(data.images)
        for i, image in enumerate(data.images):
            self.ctx.check()
            if n > 1 and (i % 10 == 0 or i == n - 1):
                self.ctx.progress(0, self.total, f"Encoding {what} {i + 1}/{n}")
            data.latents[i] = self._encode_image(image)

    # -- class images (prior preservation) ----------------------------------------------------
    def _sample_kwargs(self, prompt: str) -> dict:
        from studio.engine.diffusion.sd.prompts import prompt_kwargs

        return prompt_kwargs(self.pipe, self.family, prompt, "", 1)

    def _cancel_callback(self):
        token = self.ctx.token

        def callback(pipe, step, timestep, kwargs):
            token.raise_if_cancelled()
            return kwargs

        return callback

    def _generate(self, kwargs: dict, size: int, seed: int, steps: int) -> np.ndarray:
        """One image (uint8 RGB) from the pipeline as it is now (with the LoRA once added).
        The latents are decoded by ``diffusion.sd.sampling.decode_latents`` in the VAE's own dtype: under
        mixed precision SDXL's VAE stays fp32 while the latents are half."""
        from studio.engine.diffusion.sd.sampling import decode_latents

        latents = self.pipe(
            **kwargs,
            num_inference_steps=steps,
            guidance_scale=self.family.default_guidance,
            width=size,
            height=size,
            generator=generator_for(seed, self.device),
            output_type="latent",
            callback_on_step_end=self._cancel_callback(),
        ).images
        self.ctx.check()
        out = decode_latents(self.pipe, latents)[0]
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

    def _class_images(self, resolution: int) -> list[str]:
        """The prior-preservation class images, generated by the model itself from the class
        prompt (DreamBooth's recipe) at ``resolution``; reused while the model, prompt and size
        are the same."""
        from studio.core.imageio import save_image

        req = self.req
        folder = self.paths.class_images
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "model": self.resolved.name,
            "prompt": req.class_prompt,
            "resolution": resolution,
            "seed": int(req.seed),
            "steps": int(req.sample_steps),
        }
        info_file = folder / "info.json"
        try:
            old = json.loads(info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != info:
            for stale in folder.glob("class-*.png"):
                stale.unlink()
            info_file.write_text(json.dumps(info, indent=2), encoding="utf-8")
        n = int(req.num_class_images)
        wanted = [folder / f"class-{i:04d}.png" for i in range(n)]
        missing = [p for p in wanted if not p.exists()]
        if missing:
            kwargs = self._sample_kwargs(req.class_prompt)
            for k, path in enumerate(missing):
                self.ctx.check()
                self.ctx.progress(0, self.total, f"Generating class image {k + 1}/{len(missing)}")
                i = wanted.index(path)
                image = self._generate(
                    kwargs, resolution, int(req.seed) + 1 + i, int(req.sample_steps)
                )
                save_image(path, image)
        return [str(p) for p in wanted]

    # -- LoRA, optimizer ----------------------------------------------------------------------
    def _add_lora(self) -> None:
        from peft import LoraConfig

        req = self.req
        torch.manual_seed(int(req.seed))  # peft's gaussian init draws from the global RNG
        config = LoraConfig(
            r=int(req.rank),
            lora_alpha=int(req.rank),
            init_lora_weights="gaussian",
            target_modules=list(TARGET_MODULES),
        )
        self.unet.add_adapter(config)
        if self.weight_dtype != torch.float32:
            from diffusers.training_utils import cast_training_params

            cast_training_params(self.unet, dtype=torch.float32)  # the LoRA trains in fp32
        if req.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.unet.train()
        self.params = [p for p in self.unet.parameters() if p.requires_grad]

    def _optimizer(self):
        from diffusers.optimization import get_scheduler

        req = self.req
        cls = torch.optim.AdamW
        self.optimizer_name = "adamw"
        if req.optimizer == "adamw8bit":
            try:
                # optional (not a declared dependency): imported by name only when asked for
                bnb = importlib.import_module("bitsandbytes")
                if self.device.type != "cuda":
                    raise ImportError("8-bit Adam runs on CUDA only")
                cls = bnb.optim.AdamW8bit
                self.optimizer_name = "adamw8bit"
            except Exception as e:  # noqa: BLE001 - missing or unusable: AdamW, with a note
                why = "bitsandbytes is not installed" if isinstance(e, ModuleNotFoundError) else e
                self.note(f"8-bit Adam unavailable ({why}): using AdamW")
        # diffusers' DreamBooth defaults: betas (0.9, 0.999), weight decay 1e-2, eps 1e-8.
        self.optimizer = cls(
            self.params, lr=float(req.lr), betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
        )
        warm = int(req.lr_warmup)
        self.lr_schedule = get_scheduler(
            "constant_with_warmup" if warm else "constant",
            optimizer=self.optimizer,
            num_warmup_steps=warm,
            num_training_steps=self.total,
        )
        self.scaler = None
        if self.mixed == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)

    # -- checkpoints ----------------------------------------------------------------------------
    def _settings(self) -> dict:
        req = self.req
        images = []
        for p in req.images:  # by content: a changed image means another training set
            digest = hashlib.sha1(Path(p).read_bytes()).hexdigest()[:16]
            images.append([Path(p).name, digest])
        return {
            "model": self.resolved.name,
            "images": images,
            "prompts": [im.prompt for im in self.instances.images],
            "rank": int(req.rank),
            "seed": int(req.seed),
            "resolution": self.resolution,
            "batch_size": int(req.batch_size),
            "lr": float(req.lr),
            "lr_warmup": int(req.lr_warmup),
            "prior_preservation": bool(req.prior_preservation),
            "prior_weight": float(req.prior_weight) if req.prior_preservation else None,
            "num_class_images": int(req.num_class_images) if req.prior_preservation else None,
            "optimizer": self.optimizer_name,
            "mixed_precision": self.mixed,
            "trigger": req.trigger.strip(),
            "steps": self.total,
        }

    def _save_checkpoint(self, step: int) -> Path:
        from peft.utils import get_peft_model_state_dict

        opt = {
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_schedule.state_dict(),
        }
        if self.scaler is not None:
            opt["scaler"] = self.scaler.state_dict()
        state = {**self._settings(), "losses": self.losses[-LOSSES_KEPT:]}
        folder = ckpt.save_checkpoint(
            self.paths.checkpoints, step, get_peft_model_state_dict(self.unet), opt, state
        )
        self.last_saved = step
        return folder

    def _resume(self) -> int:
        """The step to start from: a resumed checkpoint's, else 0. A fresh run moves the
        previous run's checkpoints to ``checkpoints.previous`` (replacing an older one there),
        so a later --resume can't pick them up by mistake and a forgotten --resume loses
        nothing."""
        from peft.utils import set_peft_model_state_dict

        root = self.paths.checkpoints
        if not self.req.resume:
            if ckpt.checkpoint_dirs(root):
                previous = root.with_name("checkpoints.previous")
                shutil.rmtree(previous, ignore_errors=True)
                root.rename(previous)
                self.note(
                    f"Starting over (no --resume): the previous run's checkpoints are in {previous}"
                )
            return 0
        found = ckpt.latest_checkpoint(root)
        if found is None:
            self.note(f"No checkpoint to resume in {root}: starting a new run")
            return 0
        reason = ckpt.compatible(found.state, {"format": ckpt.FORMAT, **self._settings()})
        if reason:
            raise BadInput(
                f"Cannot resume from {found.folder.name}: {reason} (train without --resume to "
                "start over)"
            )
        if found.step > self.total:
            raise BadInput(
                f"The checkpoint is at step {found.step}, past --steps {self.total}: give "
                f"--steps {found.step} or more to continue it"
            )
        adapter, opt = ckpt.load_checkpoint(found)
        result = set_peft_model_state_dict(self.unet, adapter, adapter_name="default")
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise BadInput(f"Checkpoint {found.folder.name} does not fit this model's UNet")
        self.optimizer.load_state_dict(opt["optimizer"])
        self.lr_schedule.load_state_dict(opt["lr_scheduler"])
        if self.scaler is not None and "scaler" in opt:
            self.scaler.load_state_dict(opt["scaler"])
        self.losses = [float(x) for x in found.state.get("losses", [])]
        self.last_saved = found.step
        self.note(f"Resuming from step {found.step}", found.step)
        return min(found.step, self.total)

    # -- the step -------------------------------------------------------------------------------
    def _step_generator(self, step: int) -> torch.Generator:
        seed = (int(self.req.seed) * 1_000_003 + 7919 * (int(step) + 1)) & 0xFFFF_FFFF_FFFF
        return generator_for(seed, self.device)

    def _time_ids(self, images: list[PreparedImage]) -> torch.Tensor:
        rows = [[*im.original, *im.crop, im.bucket[1], im.bucket[0]] for im in images]
        return torch.tensor(rows, dtype=self.weight_dtype, device=self.device)

    def _loss(self, data: _Set, idx: list[int], gen: torch.Generator) -> torch.Tensor:
        """L_simple (Ho et al. 2020, eq. 14) on the images ``idx`` of ``data``."""
        x0 = torch.cat([self._latent(data, i, gen) for i in idx], dim=0)
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(self.device)
        t = torch.randint(
            0,
            self.noise_scheduler.config.num_train_timesteps,
            (x0.shape[0],),
            generator=gen,
            device=gen.device,
        ).to(self.device)
        xt = self.noise_scheduler.add_noise(x0, noise, t)
        images = [data.images[i] for i in idx]
        embeds, pooled = self._batch_text([im.prompt for im in images])
        kwargs = {}
        if self.text_time:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": pooled,
                "time_ids": self._time_ids(images),
            }
        with torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.mixed != "no"):
            pred = self.unet(xt.to(self.weight_dtype), t, embeds, return_dict=False, **kwargs)[0]
        if pred.shape[1] == 2 * x0.shape[1]:  # learned variance: train the mean only
            pred = pred[:, : x0.shape[1]]
        if self.prediction == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        return F.mse_loss(pred.float(), target.float(), reduction="mean")

    def _train_step(self, step: int) -> tuple[float, float, float | None]:
        req = self.req
        gen = self._step_generator(step)
        idx = batch_for_step(self.instances.buckets, int(req.batch_size), int(req.seed), step)
        instance = self._loss(self.instances, idx, gen)
        loss, prior = instance, None
        if self.classes is not None:
            cidx = batch_for_step(
                self.classes.buckets, int(req.batch_size), self.classes.seed, step
            )
            prior = self._loss(self.classes, cidx, gen)
            loss = instance + float(req.prior_weight) * prior
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, float(req.max_grad_norm))
        self.updating = True
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updating = False
        return (
            float(loss.detach()),
            float(instance.detach()),
            (float(prior.detach()) if prior is not None else None),
        )

    # -- samples --------------------------------------------------------------------------------
    def _preview(self, step: int) -> None:
        """A sample of the sample prompt at the request's seed, as a Preview event."""
        offloaded = self.vae_offloaded
        if offloaded:
            self.vae.to(self.device)
        self.unet.eval()
        try:
            with torch.no_grad():
                image = self._generate(
                    self.sample_kwargs,
                    self.resolution,
                    int(self.req.seed),
                    int(self.req.sample_steps),
                )
        finally:
            self.unet.train()
            if offloaded:
                self.vae.to("cpu")
        self.sample = image
        self.ctx.preview(image, step, self.total)

    # -- log --------------------------------------------------------------------------------------
    def _open_log(self, start: int):
        if not self.req.log_csv:
            return None
        path = Path(self.req.log_csv).expanduser()
        if not path.parent.is_dir():
            raise BadInput(f"--log {self.req.log_csv}: folder {path.parent} does not exist")
        rows = []
        if start > 0 and path.exists():
            try:
                with path.open(newline="", encoding="utf-8") as f:
                    rows = [r for r in csv.DictReader(f) if int(r.get("step") or 0) <= start]
            except (OSError, ValueError):
                rows = []
        f = path.open("w", newline="", encoding="utf-8")
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in CSV_FIELDS} for r in rows)
        f.flush()
        return f, writer

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> Finished:
        try:
            return self._run()
        finally:
            self._release()

    def _release(self) -> None:
        """Drop the job's own copy of the model now (not at the next garbage collection), so
        the next job gets the accelerator's memory back."""
        from studio.engine.jobs.runner import free_memory

        for name in ("pipe", "unet", "vae", "optimizer", "lr_schedule", "params", "scaler"):
            self.__dict__.pop(name, None)
        self.text_cache.clear()
        for data in (getattr(self, "instances", None), getattr(self, "classes", None)):
            if data is not None:
                data.latents.clear()
        free_memory()

    def _run(self) -> Finished:
        req = self.req
        self._load()
        self.resolution = self._resolution()
        prompts = self._prompts()
        self.ctx.progress(0, self.total, f"Preparing {len(req.images)} images")
        prepared = prepare_images(req.images, self.resolution, prompts)
        small = [im for im in prepared if min(im.original) < min(im.bucket)]
        if small:
            self.note(
                f"{len(small)} of {len(prepared)} images are smaller than their "
                f"{small[0].bucket[0]}x{small[0].bucket[1]} bucket and were upscaled"
            )
        self.instances = _Set(prepared, [im.bucket for im in prepared], int(req.seed))
        self.classes = None
        if req.prior_preservation:
            files = self._class_images(self.resolution)
            class_set = prepare_images(files, self.resolution, [req.class_prompt] * len(files))
            self.classes = _Set(class_set, [im.bucket for im in class_set], int(req.seed) + 1)
        # Conditioning the samples use (computed once: the text encoders may leave the GPU).
        sample_prompt = req.sample_prompt or prompts[0]
        self.sample_kwargs = self._sample_kwargs(sample_prompt) if req.sample_every else {}
        if req.cache_text:
            for p in {*prompts, "", *([req.class_prompt] if self.classes else [])}:
                self._text(p)
        if req.cache_latents:
            self._cache_latents(self.instances, "images")
            if self.classes is not None:
                self._cache_latents(self.classes, "class images")
        self._offload()
        self._add_lora()
        self._optimizer()
        start = self._resume()
        log = self._open_log(start)
        self.updating = False
        step = start
        t0 = time.perf_counter()
        try:
            while step < self.total:
                self.ctx.check()
                loss, inst, prior = self._train_step(step)
                step += 1
                self.losses.append(loss)
                lr = self.lr_schedule.get_last_lr()[0]
                if not math.isfinite(loss):
                    raise StudioError(
                        f"The loss became {loss} at step {step}: try a lower --lr"
                        + (" or --mixed-precision no" if self.mixed == "fp16" else "")
                    )
                if log is not None:
                    log[1].writerow(
                        {
                            "step": step,
                            "loss": f"{loss:.6f}",
                            "instance_loss": f"{inst:.6f}",
                            "prior_loss": "" if prior is None else f"{prior:.6f}",
                            "lr": f"{lr:.3e}",
                            "seconds": f"{time.perf_counter() - t0:.3f}",
                        }
                    )
                    log[0].flush()
                self.ctx.progress(step, self.total, self._line(step, start, t0, lr))
                if req.sample_every and (step % req.sample_every == 0 or step == self.total):
                    self._preview(step)
                if req.checkpoint_every and step % req.checkpoint_every == 0:
                    self._save_checkpoint(step)
        except JobCancelled:
            if step > self.last_saved and step > 0 and not self.updating:
                self._save_checkpoint(step)
            raise
        except Exception as e:
            if is_oom(e):
                if step > self.last_saved and step > 0 and not self.updating:
                    self._save_checkpoint(step)
                raise StudioError(
                    f"Out of memory training at {self.resolution} px: try --preset 12gb, a "
                    "lower --resolution, --gradient-checkpointing or a smaller --rank",
                    repr(e),
                ) from e
            raise
        finally:
            if log is not None:
                log[0].close()
        if step > self.last_saved:
            self._save_checkpoint(step)
        return self._finish(step)

    def _offload(self) -> None:
        """On a GPU, cached latents/embeddings let the VAE/text encoders leave it."""
        if self.device.type != "cuda":
            return
        if self.req.cache_latents:
            self.vae.to("cpu")
            self.vae_offloaded = True
        if self.req.cache_text:
            for _name, enc, _tok in self._encoders():
                enc.to("cpu")
        torch.cuda.empty_cache()

    def _line(self, step: int, start: int, t0: float, lr: float) -> str:
        recent = self.losses[-LOSS_WINDOW:]
        done = step - start
        left = (time.perf_counter() - t0) / max(1, done) * (self.total - step)
        return (
            f"step {step}/{self.total}: loss {self.losses[-1]:.4f} "
            f"(avg {sum(recent) / len(recent):.4f}), lr {lr:.2e}, ETA {format_eta(left)}"
        )

    def _finish(self, step: int) -> Finished:
        from peft.utils import get_peft_model_state_dict

        from studio.engine.training.lora_file import save_lora

        req = self.req
        info = {
            "base_model": self.resolved.name,
            "family": self.family.name,
            "trigger": req.trigger.strip(),
            "class_prompt": req.class_prompt,
            "prior_preservation": bool(req.prior_preservation),
            "steps": step,
            "rank": int(req.rank),
            "alpha": int(req.rank),
            "images": len(req.images),
            "resolution": self.resolution,
            "lr": float(req.lr),
            "seed": int(req.seed),
            "batch_size": int(req.batch_size),
            "prediction_type": self.prediction,
            "name": self.paths.out.stem,
            "trainer": "Studio DreamBooth LoRA",
        }
        save_lora(
            self.paths.out,
            get_peft_model_state_dict(self.unet),
            self.unet.peft_config["default"].to_dict(),
            type(self.pipe),
            info,
            req.save_format,
        )
        recent = self.losses[-LOSS_WINDOW:]
        loss = sum(recent) / len(recent) if recent else None
        extra = {
            "path": str(self.paths.out),
            "steps": step,
            "loss": loss,
            "losses": list(self.losses),
            "checkpoints": str(self.paths.checkpoints),
            "notes": list(self.notes),
        }
        images = [self.sample] if self.sample is not None else []
        meta = [{**info, "prompt": req.sample_prompt or self.instances.images[0].prompt}]
        return self.ctx.finished(images, meta if images else [], extra)


def format_eta(seconds: float) -> str:
    """A duration in seconds as "1:02:03" (or "2:03" under an hour)."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
