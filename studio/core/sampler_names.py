"""The sampler and schedule-type vocabulary of AUTOMATIC1111 (and Forge, which shares it) and
ComfyUI, torch-free: what an infotext, a ComfyUI workflow or a user means by a sampler name
plus a schedule type, as one Studio sampler name ("DPM++ 2M SDE Exponential").

Transcribed (not imported) from:

- A1111 ``modules/sd_schedulers.py`` (``schedulers``: name, label, aliases; 1.9+), the
  ``samplers_k_diffusion`` table of ``modules/sd_samplers_kdiffusion.py`` (1.9+: each
  sampler's default ``scheduler`` option, ``second_order``) and
  ``modules/sd_samplers_timesteps.py`` (DDIM, PLMS, UniPC: ``get_timesteps`` ignores the
  schedule type);
- A1111 ``modules/sd_samplers.py`` ``get_sampler_and_scheduler``: a schedule written after the
  sampler name ("DPM++ 2M Karras") wins over the "Schedule type" field, and "Automatic" is
  the sampler's own default (``options['scheduler']``: Karras for "DPM++ 2M", Exponential
  for "DPM++ 2M SDE", none = uniform for "Euler");
- ComfyUI ``comfy/samplers.py`` / ``comfy/sampler_names.py`` (``KSAMPLER_NAMES``,
  ``SAMPLER_NAMES``, ``SCHEDULER_NAMES``, ``sampler_object``: "ddim" runs k-diffusion's Euler
  on the scheduler's sigmas).

Two readings of an A1111 text differ from A1111 >= 1.9 on purpose: a text *without* a
"Schedule type" field was written by A1111 <= 1.8, whose "DPM++ 2M" was uniform, so the name
keeps that meaning (1.9 would read it as "Automatic", Karras); and a suffix is matched
longest-first ("Euler SGM Uniform" is Euler + SGM Uniform, where A1111's loop strips
" Uniform" first).
"""

from __future__ import annotations

# -- A1111 sd_schedulers.schedulers: (name, label, aliases) in A1111's order -----------------------
A1111_SCHEDULERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("automatic", "Automatic", ()),
    ("uniform", "Uniform", ()),
    ("karras", "Karras", ()),
    ("exponential", "Exponential", ()),
    ("polyexponential", "Polyexponential", ()),
    ("sgm_uniform", "SGM Uniform", ("SGMUniform",)),
    ("kl_optimal", "KL Optimal", ()),
    ("align_your_steps", "Align Your Steps", ()),
    ("simple", "Simple", ()),
    ("normal", "Normal", ()),
    ("ddim", "DDIM", ()),
    ("beta", "Beta", ()),
)
AUTOMATIC = "Automatic"
SCHEDULE_LABELS: tuple[str, ...] = tuple(label for _n, label, _a in A1111_SCHEDULERS)

# A1111 1.9+ samplers_k_diffusion: label -> (aliases, default schedule or None, second order)
A1111_K_DIFFUSION: dict[str, tuple[tuple[str, ...], str | None, bool]] = {
    "DPM++ 2M": (("k_dpmpp_2m",), "Karras", False),
    "DPM++ SDE": (("k_dpmpp_sde",), "Karras", True),
    "DPM++ 2M SDE": (("k_dpmpp_2m_sde",), "Exponential", False),
    "DPM++ 2M SDE Heun": (("k_dpmpp_2m_sde_heun",), "Exponential", False),
    "DPM++ 2S a": (("k_dpmpp_2s_a",), "Karras", True),
    "DPM++ 3M SDE": (("k_dpmpp_3m_sde",), "Exponential", False),
    "Euler a": (("k_euler_a", "k_euler_ancestral"), None, False),
    "Euler": (("k_euler",), None, False),
    "LMS": (("k_lms",), None, False),
    "Heun": (("k_heun",), None, True),
    "DPM2": (("k_dpm_2",), "Karras", True),
    "DPM2 a": (("k_dpm_2_a",), "Karras", True),
    "DPM fast": (("k_dpm_fast",), None, False),
    "DPM adaptive": (("k_dpm_ad",), None, False),
    "Restart": (("restart",), "Karras", True),
}
# sd_samplers_timesteps: their timesteps come from get_timesteps, whatever the schedule type.
A1111_TIMESTEPS: tuple[str, ...] = ("DDIM", "DDIM CFG++", "PLMS", "UniPC")

# -- ComfyUI ------------------------------------------------------------------------------------
# KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"] -> the A1111 twin (same k-diffusion
# function and options). The *_gpu variants only draw their Brownian noise on the GPU.
COMFY_SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddpm": "DDPM",
    "lcm": "LCM",
    "deis": "DEIS",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
}
# ComfyUI's beta scheduler rounds Beta(0.6, 0.6) quantiles to *training timesteps* and takes
# their sigmas; A1111's (and diffusers' use_beta_sigmas) spaces the *sigmas* between
# sigma_min and sigma_max by those quantiles: a different schedule under the same name.
COMFY_BETA = "ComfyUI beta"
# SCHEDULER_NAMES -> the A1111 schedule type computed by the same formula.
COMFY_SCHEDULERS: dict[str, str] = {
    "normal": "Normal",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "ddim_uniform": "DDIM",
    "beta": COMFY_BETA,
    "linear_quadratic": "Linear Quadratic",
    "kl_optimal": "KL Optimal",
}
# Every schedule-type label a Studio sampler name may end with, longest first.
ALL_LABELS: tuple[str, ...] = tuple(
    sorted(set(SCHEDULE_LABELS) | set(COMFY_SCHEDULERS.values()), key=len, reverse=True)
)


def _k(text: str) -> str:
    return " ".join(str(text).strip().lower().replace("-", " ").split())


_SCHEDULE_LOOKUP: dict[str, str] = {}
for _name, _label, _aliases in A1111_SCHEDULERS:
    for _spelling in (_name, _label, *_aliases):
        _SCHEDULE_LOOKUP[_k(_spelling)] = _label
_SCHEDULE_LOOKUP[_k("ddim_uniform")] = "DDIM"
_A1111_NAMES: dict[str, str] = {}
for _label, (_aliases, _default, _second) in A1111_K_DIFFUSION.items():
    for _spelling in (_label, *_aliases):
        _A1111_NAMES[_k(_spelling)] = _label
for _label in A1111_TIMESTEPS:
    _A1111_NAMES[_k(_label)] = _label


def schedule_label(text: str | None) -> str | None:
    """The A1111 label of a schedule type given by label, name or alias ("karras", "SGM
    Uniform", "sgm_uniform", "SGMUniform"), case-insensitive; None for None or ""; an
    unknown spelling comes back stripped (the engine refuses it by name)."""
    if text is None or not str(text).strip():
        return None
    return _SCHEDULE_LOOKUP.get(_k(text), str(text).strip())


def a1111_label(sampler: str) -> str | None:
    """The A1111 label of a sampler name or A1111 alias ("k_dpmpp_2m" -> "DPM++ 2M"), or None
    when A1111 has no such sampler."""
    return _A1111_NAMES.get(_k(sampler))


def is_k_diffusion(sampler: str) -> bool:
    """Whether A1111 runs ``sampler`` on a sigma schedule (so a schedule type applies)."""
    label = a1111_label(sampler)
    return label is not None and label in A1111_K_DIFFUSION


def second_order(sampler: str) -> bool:
    """A1111's ``second_order`` option (its prompt schedules count 2 x steps for these)."""
    base, _ = split_schedule(sampler)
    label = a1111_label(base)
    return bool(label and label in A1111_K_DIFFUSION and A1111_K_DIFFUSION[label][2])


def split_schedule(name: str) -> tuple[str, str | None]:
    """A Studio sampler name as (sampler, schedule-type label or None): "DPM++ 2M Karras" ->
    ("DPM++ 2M", "Karras"), "Euler SGM Uniform" -> ("Euler", "SGM Uniform"), "DDIM" ->
    ("DDIM", None). The longest label that ends the name after a space wins."""
    text = " ".join(str(name or "").split())
    low = text.lower()
    for label in ALL_LABELS:
        # text has no leading space, so a match leaves a non-empty sampler before the label
        if low.endswith(" " + label.lower()):
            return text[: -len(label) - 1], label
    return text, None


def _join(sampler: str, label: str | None) -> str:
    if label is None:
        return sampler
    if label in ("Uniform", "Normal") and is_k_diffusion(sampler):
        return sampler  # k-diffusion's default schedule: get_sigmas(n), t from T-1 to 0
    return f"{sampler} {label}"


def compose(sampler: str, schedule_type: str | None = None, *, infotext: bool = False) -> str:
    """One Studio sampler name for ``sampler`` and ``schedule_type``.

    - A ComfyUI pair (both spelled as ComfyUI spells them: "dpmpp_2m" + "karras") is its A1111
      twin: "DPM++ 2M Karras". ComfyUI's "ddim" is Euler on the scheduler's sigmas, so "ddim"
      with another scheduler than ddim_uniform is "Euler <schedule>".
    - Otherwise A1111's ``get_sampler_and_scheduler``: a schedule after the sampler name wins
      over ``schedule_type`` when ``infotext`` (what A1111 reads); for a user's explicit
      choice (``infotext=False``: the CLI, the panel) ``schedule_type`` wins. "Automatic" is
      the sampler's own A1111 >= 1.9 default; with ``infotext``, DDIM, PLMS and UniPC keep
      their own timesteps whatever the field says (A1111 ignores it for them).
    - Uniform and Normal are the k-diffusion samplers' plain names.

    The result is a name, not a promise: the engine (``schedulers.canonical_name``) refuses
    in one line what diffusers can't build."""
    name = " ".join(str(sampler or "").split())
    field = str(schedule_type).strip() if schedule_type is not None else ""
    if name in COMFY_SAMPLERS and (not field or field in COMFY_SCHEDULERS):
        twin = COMFY_SAMPLERS[name]
        label = COMFY_SCHEDULERS.get(field) if field else None
        if name == "ddim" and label not in (None, "DDIM"):
            twin = "Euler"
        elif name == "ddim":
            label = None  # A1111's DDIM grid is ddim_uniform's (t = 1, 1 + T/n, ...)
        return _join(twin, label)
    base, suffix = split_schedule(name)
    chosen = schedule_label(field) if field else None
    if suffix is not None and (infotext or chosen is None):
        return _join(base, suffix)
    if chosen is None:
        return name
    if infotext and a1111_label(base) in A1111_TIMESTEPS:
        return base
    if chosen == AUTOMATIC:
        label = a1111_label(base)
        default = A1111_K_DIFFUSION.get(label, ((), None, False))[1] if label else None
        return _join(base, default)
    return _join(base, chosen)


def infotext_fields(sampler: str) -> tuple[str, str | None]:
    """What A1111 >= 1.9 writes for a Studio sampler name: ("Sampler", "Schedule type" or
    None). A k-diffusion sampler always gets its schedule written (its plain name is
    "Uniform": without the field A1111 >= 1.9 would read "DPM++ 2M" as Karras); samplers
    without a sigma schedule (DDIM, PLMS, UniPC, Studio's own) get none."""
    base, label = split_schedule(sampler)
    if label is not None:
        return base, label
    if is_k_diffusion(base):
        return base, "Uniform"
    return base, None
