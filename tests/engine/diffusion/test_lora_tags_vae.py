"""<lora:name:weight> tags in prompts and an external VAE per job on the tiny
models: tags are resolved by name from the models folders, stripped from the text and applied
(the same pixels as passing the LoRA explicitly); a missing one is one clear message; an
external VAE changes the decode and the next job gets the model's own VAE back."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from studio.engine.fixtures.tiny_models import build_tiny_lora, tiny_vae
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import GenerateRequest, LoraSpec
from studio.engine.jobs.runner import Runner


@pytest.fixture
def home_lora(tiny_models, studio_home):
    folder = studio_home / "models" / "lora"
    folder.mkdir(parents=True)
    return build_tiny_lora(tiny_models.sd, folder / "detail.safetensors", seed=1)


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(device="cpu")


def _run(runner, model, **kw):
    base = dict(model=str(model), prompt="a cat", steps=2, width=64, height=64, seed=2)
    base.update(preview="off", **kw)
    return runner.run(GenerateRequest(**base))


def _ok(runner, model, **kw) -> Finished:
    final = _run(runner, model, **kw)
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final


def test_prompt_lora_tag_is_resolved_stripped_and_applied(runner, tiny_models, home_lora):
    tagged = _ok(runner, tiny_models.sd, prompt="a cat, <lora:detail:0.7>")
    explicit = _ok(runner, tiny_models.sd, loras=(LoraSpec(str(home_lora), 0.7),))
    plain = _ok(runner, tiny_models.sd)
    diff = np.abs(tagged.images[0].astype(int) - explicit.images[0].astype(int))
    assert diff.max() <= 2  # the same LoRA and weight (fusing rounds in another order)
    assert not np.array_equal(tagged.images[0], plain.images[0])
    assert "<lora:detail:0.7>" in tagged.metadata[0]["prompt"]  # A1111 keeps tags in the text


def test_a_missing_prompt_lora_is_one_clear_message(runner, tiny_models, studio_home):
    final = _run(runner, tiny_models.sd, prompt="a cat <lora:nowhere:1>")
    assert isinstance(final, Failed) and final.exit_code == 2
    assert "LoRA 'nowhere'" in final.message and "\n" not in final.message


def test_external_vae_is_used_for_the_job_and_undone_after(runner, tiny_models, tmp_path):
    torch.manual_seed(123)
    vae_dir = tmp_path / "my-vae"
    tiny_vae().save_pretrained(vae_dir, safe_serialization=True)
    own = _ok(runner, tiny_models.sd).images[0]
    other = _ok(runner, tiny_models.sd, vae=str(vae_dir)).images[0]
    assert not np.array_equal(own, other)
    assert np.array_equal(_ok(runner, tiny_models.sd).images[0], own)  # own VAE back
    assert np.array_equal(_ok(runner, tiny_models.sd, vae=str(vae_dir)).images[0], other)


def test_a_vae_of_another_latent_space_is_refused(runner, tiny_models, tmp_path):
    from diffusers import AutoencoderKL

    vae_dir = tmp_path / "vae16"
    AutoencoderKL(
        block_out_channels=(8,), norm_num_groups=4, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
    ).save_pretrained(vae_dir)  # fmt: skip
    final = _run(runner, tiny_models.sd, vae=str(vae_dir))
    assert isinstance(final, Failed) and "16 latent channels" in final.message
    shutil.rmtree(vae_dir)


def _addnet_hash(path) -> str:
    """kohya's / A1111's LoRA hash, computed here from the file format: sha256 of everything
    after the safetensors header (8-byte little-endian length, then that much JSON)."""
    import hashlib

    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n :]).hexdigest()[:12]


def test_inpainting_with_a_prompt_lora_writes_its_hash(runner, tiny_models, home_lora):
    from studio.engine.jobs.requests import InpaintRequest

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 16:40] = 255
    want = f"detail: {_addnet_hash(home_lora)}"
    canvas = _ok(runner, tiny_models.sd, prompt="a cat <lora:detail:0.5>", init_image=image, mask=mask)  # fmt: skip
    assert canvas.metadata[0]["lora_hashes"] == want
    panel = runner.run(
        InpaintRequest(
            image=image, mask=mask, method="diffusion", model=str(tiny_models.sd),
            prompt="a cat <lora:detail:0.5>", steps=2, padding=8, preview="off",
        )
    )  # fmt: skip
    assert isinstance(panel, Finished), getattr(panel, "message", panel)
    assert panel.metadata[0]["lora_hashes"] == want


def test_a_broken_vae_file_is_one_whole_message_with_the_error_in_the_detail(
    runner, tiny_models, tmp_path
):
    bad = tmp_path / "broken-vae.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\0" * 64)
    final = _run(runner, tiny_models.sd, vae=str(bad))
    assert isinstance(final, Failed) and final.exit_code == 3
    assert final.message.startswith("VAE broken-vae.safetensors: cannot load (")
    assert final.message.endswith(")") and "\n" not in final.message
    reason = final.message.split("cannot load (", 1)[1][:-1]
    assert reason and (reason in final.detail or reason.endswith("…"))
    # The next job still runs with the model's own VAE.
    assert isinstance(_run(runner, tiny_models.sd), Finished)


def test_a_long_error_is_cut_between_words_never_inside_one():
    from studio.core.errors import short_error as _short

    words = " ".join(f"word{i}" for i in range(120))  # ~830 characters, no sentence end
    cut = _short(RuntimeError(words))
    assert cut.endswith("…") and len(cut) <= 301
    assert cut[:-1].split(" ")[-1] in words.split(" ")  # the last word is whole
    sentences = "First sentence says what failed. " + words
    assert _short(RuntimeError(sentences)) == "First sentence says what failed." or _short(
        RuntimeError(sentences)
    ).endswith("…")
