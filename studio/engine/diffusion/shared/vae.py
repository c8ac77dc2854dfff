"""An external VAE for a job (the ``vae`` kind: a catalog id, a diffusers folder or a single
file), checked against the family's latent space. Both tracks swap it in per job and put the
model's own VAE back after."""

from __future__ import annotations

from pathlib import Path

from studio.core.errors import BadInput, ModelError, short_error
from studio.engine.diffusion.families import Family


def load_vae(ref: str, family: Family, dtype, device):
    """An external AutoencoderKL (``vae`` kind: a catalog id, a diffusers folder or a single
    file, which loads with the family's shipped VAE config, offline). BadInput when its latent
    space doesn't fit the family."""
    from diffusers import AutoencoderKL

    from studio.engine.diffusion.shared.loader import CONFIGS, quiet_loading
    from studio.engine.models import resolve

    quiet_loading()
    path = resolve(ref, "vae")
    try:
        if path.is_dir():
            folder = path / "vae" if (path / "vae" / "config.json").exists() else path
            module = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        else:
            config = CONFIGS / family.configs[0] / "vae" if family.configs else None
            module = AutoencoderKL.from_single_file(
                str(path),
                config=str(config) if config else None,
                torch_dtype=dtype,
                local_files_only=True,
            )
    except (ModelError, BadInput):
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"VAE {Path(ref).name}: cannot load ({short_error(e)})", str(e)) from e
    channels = int(module.config.latent_channels)
    if channels != family.latent_channels:
        raise BadInput(
            f"VAE {Path(ref).name} has {channels} latent channels; {family.label} models need "
            f"{family.latent_channels}"
        )
    return module.to(device)
