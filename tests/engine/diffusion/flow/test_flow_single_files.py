"""Single files of the flow families through load_flow: transformer-only .safetensors / .sft
and GGUF Q8_0 files joined to the base repo's pipeline found locally (here the tiny pipeline
put in a per-test Hugging Face cache under the descriptor's base repo id), the one error when
the base is missing, and the request's quant / offload overrides (fp8 layerwise casting on
the CPU, refusals in one line, the cache key)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flow_requests import flow_request

from studio.core.errors import BadInput, ModelError
from studio.engine.diffusion.families.registry import probe_file
from studio.engine.diffusion.flow.generate import run_flow_generate
from studio.engine.diffusion.flow.load import load_flow
from studio.engine.fixtures.tiny_flow_models import (
    put_in_hf_cache,
    write_gguf_transformer,
    write_transformer_file,
)
from studio.engine.jobs.events import Failed, Finished
from studio.engine.jobs.requests import GenerateRequest
from studio.engine.jobs.runner import Runner

BASES = {"flux1": "black-forest-labs/FLUX.1-schnell", "zimage": "Tongyi-MAI/Z-Image-Turbo"}


def _req(model, **kw) -> GenerateRequest:
    return flow_request(model, **{"seed": 3, **kw})


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own (nothing leaks into other tests)."""
    home = tmp_path / "hf-home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home / "hub"


def _run(runner, req):
    final = runner.run(req, emit=lambda ev: None)
    assert isinstance(final, Finished), getattr(final, "message", final)
    return final


@pytest.mark.parametrize("name", ["flux1", "zimage"])
def test_transformer_file_through_the_runner(flow_models, hub, tmp_path, name):
    folder = getattr(flow_models, name)
    put_in_hf_cache(folder, BASES[name], hub)
    path = write_transformer_file(folder, tmp_path / "models" / f"{name}-transformer.safetensors")
    runner = Runner(device="cpu", dtype="float32")
    from_file = _run(runner, _req(path))
    assert from_file.metadata[0]["family"] == name
    (img,) = from_file.images
    assert img.shape == (64, 64, 3) and img.std() > 0
    # The file holds the folder's own transformer: the same seed gives the same image.
    from_folder = _run(runner, _req(folder))
    assert np.array_equal(img, from_folder.images[0])


def test_sft_file_and_entry(flow_models, hub, tmp_path, job):
    put_in_hf_cache(flow_models.zimage, BASES["zimage"], hub)
    path = write_transformer_file(flow_models.zimage, tmp_path / "z_image_turbo.sft")
    entry = load_flow(job().ctx, str(path), "cpu", "float32")
    assert entry.family.name == "zimage" and entry.source == "transformer file"
    assert type(entry.base).__name__ == "ZImagePipeline" and entry.plan is None
    assert entry.plan_line == "CPU, float32"
    out = run_flow_generate(job().ctx, _req(path)).images[0]
    assert out.shape == (64, 64, 3) and out.std() > 0


def test_gguf_q8_0_file(flow_models, hub, tmp_path, job):
    pytest.importorskip("gguf")
    from diffusers.quantizers.gguf.utils import GGUFParameter

    put_in_hf_cache(flow_models.flux1, BASES["flux1"], hub)
    path = write_gguf_transformer(flow_models.flux1, tmp_path / "flux1-schnell-Q8_0.gguf")
    ref = run_flow_generate(job().ctx, _req(flow_models.flux1)).images[0]
    ctx = job().ctx
    quant = run_flow_generate(ctx, _req(path)).images[0]
    entry = load_flow(ctx, str(path), "cpu", "float32")
    assert entry.source == "gguf file" and entry.family.name == "flux1"
    assert any(isinstance(p, GGUFParameter) for p in entry.base.transformer.parameters())
    assert entry.plan.weights == "q8_0" and entry.plan.needs.key == "flux1-schnell"
    # Q8_0 keeps ~8 bits per weight: close to the float image, not identical.
    diff = np.abs(ref.astype(int) - quant.astype(int))
    assert 0 < diff.mean() < 8 and quant.std() > 0
    with pytest.raises(BadInput, match="flux1-schnell-Q8_0.gguf is a Q8_0 GGUF file"):
        load_flow(job().ctx, str(path), "cpu", "float32", quant="fp8")


@pytest.mark.parametrize("suffix", [".gguf", ".sft"])
def test_gguf_and_sft_files_through_the_runner(flow_models, hub, tmp_path, suffix):
    """What the CLI and the canvas send: a GenerateRequest naming the file. The Runner's
    family dispatch probes .gguf / .sft files too (not only .safetensors)."""
    put_in_hf_cache(flow_models.flux1, BASES["flux1"], hub)
    if suffix == ".gguf":
        pytest.importorskip("gguf")
        path = write_gguf_transformer(flow_models.flux1, tmp_path / "flux1-schnell-Q8_0.gguf")
    else:
        path = write_transformer_file(flow_models.flux1, tmp_path / "flux1-schnell.sft")
    final = _run(Runner(device="cpu", dtype="float32"), _req(path))
    assert final.metadata[0]["family"] == "flux1"
    assert final.metadata[0]["offload"] == final.extra["plan"]  # how it ran
    if suffix == ".sft":
        assert final.extra["plan"] == "CPU, float32"
    else:  # the file fixes the weights' format
        assert "q8_0" in final.extra["plan"]
    assert final.images[0].shape == (64, 64, 3) and final.images[0].std() > 0


def test_gguf_file_is_identified_for_import(flow_models, tmp_path):
    """Dropped on the window or put in models/checkpoints, a GGUF transformer is identified
    (its tensor table only) as a model of its family, and the folder scan lists it."""
    pytest.importorskip("gguf")
    from studio.engine.models.folders import WEIGHT_SUFFIXES
    from studio.engine.models.identify import identify

    path = write_gguf_transformer(flow_models.flux1, tmp_path / "flux1-schnell-Q8_0.gguf")
    found = identify(path)
    assert (found.kind, found.base, found.format) == ("txt2img", "flux1", "gguf")
    assert found.details["transformer_only"] and ".gguf" in WEIGHT_SUFFIXES


def test_single_files_get_their_models_recommended_settings(flow_models, tmp_path):
    """A downloaded file's defaults are its model's catalog settings, found by its tensors:
    FLUX.1 schnell 4 steps / guidance 0, Z-Image Turbo 8 steps (not the 1-step turbo rule the
    file name alone would give)."""
    pytest.importorskip("gguf")
    from studio.engine.diffusion.shared.defaults import model_family, recommended_settings

    gguf = write_gguf_transformer(flow_models.flux1, tmp_path / "flux1-schnell-Q8_0.gguf")
    rec = recommended_settings(str(gguf))
    assert (rec["steps"], rec["guidance"], rec["family"]) == (4, 0.0, "flux1")
    assert model_family(str(gguf)).name == "flux1"
    z = write_transformer_file(flow_models.zimage, tmp_path / "z_image_turbo_bf16.safetensors")
    rec = recommended_settings(str(z))
    assert (rec["steps"], rec["guidance"], rec["family"]) == (8, 0.0, "zimage")


def test_missing_base_is_one_clear_error_and_the_runner_goes_on(flow_models, hub, tmp_path):
    path = write_transformer_file(flow_models.flux1, tmp_path / "flux1-schnell.safetensors")
    runner = Runner(device="cpu", dtype="float32")
    failed = runner.run(_req(path), emit=lambda ev: None)
    assert isinstance(failed, Failed) and failed.exit_code == 3
    msg = failed.message
    assert "flux1-schnell.safetensors" in msg and "black-forest-labs/FLUX.1-schnell" in msg
    assert "studio models download flux1-schnell" in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert not any("flux1-schnell.safetensors" in k for k in runner.cached_keys)  # nothing cached
    _run(runner, _req(flow_models.flux1))  # the next job runs
    put_in_hf_cache(flow_models.flux1, BASES["flux1"], hub)
    _run(runner, _req(path))  # and the file once the base is there


def test_fp8_on_the_cpu_and_the_cache_key(flow_models, job):
    ctx = job().ctx
    plain = run_flow_generate(ctx, _req(flow_models.flux1)).images[0]
    keys_plain = set(ctx.runner.cached_keys)
    fp8 = run_flow_generate(ctx, _req(flow_models.flux1, quant="fp8")).images[0]
    entry = load_flow(ctx, str(flow_models.flux1), "cpu", "float32", quant="fp8")
    assert set(ctx.runner.cached_keys) != keys_plain  # another key: loaded again
    assert any("quant=fp8" in k for k in ctx.runner.cached_keys)
    assert entry.plan.weights == "fp8" and entry.plan.forced
    linear = entry.base.transformer.single_transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn  # stored in fp8, computed in float32
    diff = np.abs(plain.astype(int) - fp8.astype(int))
    assert 0 < diff.mean() < 12 and fp8.std() > 0
    assert "fp8" in entry.plan_line
    again = run_flow_generate(ctx, _req(flow_models.flux1)).images[0]
    assert np.array_equal(plain, again)  # back to the plain weights


def test_offload_on_the_cpu_is_recorded_not_refused(flow_models, job):
    entry = load_flow(job().ctx, str(flow_models.flux1), "cpu", "float32", offload="model")
    assert entry.plan.offload == "model"
    assert "on the CPU offloading does nothing" in entry.plan.notes


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"quant": "int3"}, "Unknown quant 'int3'"),
        ({"offload": "disk"}, "Unknown offload 'disk'"),
        ({"quant": "q8_0"}, "q8_0 means a Q8_0 GGUF file"),
        ({"quant": "q4_k"}, "city96/FLUX.1-schnell-gguf"),
    ],
)
def test_bad_overrides_are_one_line(flow_models, kw, match):
    runner = Runner(device="cpu", dtype="float32")
    failed = runner.run(_req(flow_models.flux1, **kw), emit=lambda ev: None)
    assert isinstance(failed, Failed) and failed.exit_code == 2, failed
    assert match in failed.message and "\n" not in failed.message


def test_nf4_says_what_is_missing(flow_models, job):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        match = "pip install bitsandbytes"
    else:
        match = "run on a CUDA GPU"
    with pytest.raises(BadInput, match=match):
        load_flow(job().ctx, str(flow_models.flux1), "cpu", "float32", quant="nf4")


def test_unknown_file_is_one_model_error(tmp_path, job):
    from safetensors.torch import save_file

    bad = tmp_path / "mystery.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad))
    with pytest.raises(ModelError, match="mystery.safetensors: not a flow-matching model file"):
        load_flow(job().ctx, str(bad), "cpu", "float32")


# -- shipped configs ------------------------------------------------------------------------
# Published sizes of the transformers: the model cards' parameter counts and the bf16 weight
# files of the repos (memory.MODEL_NEEDS[...].transformer_gb, from shared/MODELS.md).
PUBLISHED = {
    # black-forest-labs/FLUX.1-schnell and FLUX.1-dev cards: "a 12 billion parameter
    # rectified flow transformer"; transformer/ 23.8 GB in bf16.
    "flux1-schnell": (12.0e9, 0.015),
    "flux1-dev": (12.0e9, 0.015),
    # stabilityai/stable-diffusion-3.5-large card: 8.1 billion parameters; 16.3 GB.
    "sd35-large": (8.1e9, 0.015),
    # Qwen/Qwen-Image card: a 20B MMDiT; transformer/ 40.9 GB in bf16.
    "qwen-image": (20.0e9, 0.03),
}


def _shipped_flow_configs():
    from studio.core.paths import configs_dir
    from studio.engine.diffusion.flow.load import flow_families

    out = []
    for fam in flow_families():
        for name in fam.configs:
            if (configs_dir() / name / "transformer" / "config.json").exists():
                out.append((fam, name))
    return out


def test_every_shipped_flow_config_has_a_published_size():
    shipped = {name for _, name in _shipped_flow_configs()}
    assert shipped == set(PUBLISHED)  # a new config folder needs its published size here


@pytest.mark.parametrize("fam,name", _shipped_flow_configs(), ids=lambda v: str(v))
def test_shipped_config_builds_the_published_size_on_meta(fam, name):
    import json

    import diffusers
    from accelerate import init_empty_weights

    from studio.core.paths import configs_dir
    from studio.engine.diffusion.shared.memory import MODEL_NEEDS

    cfg = json.loads((configs_dir() / name / "transformer" / "config.json").read_text())
    assert cfg["_class_name"] == fam.transformer_class
    with init_empty_weights():
        model = getattr(diffusers, fam.transformer_class).from_config(cfg)
    assert all(p.device.type == "meta" for p in model.parameters())  # no weights allocated
    n = sum(p.numel() for p in model.parameters())
    card, tol = PUBLISHED[name]
    assert abs(n - card) / card < tol, f"{name}: {n:,} parameters vs the card's {card:,.0f}"
    size_gb = MODEL_NEEDS[name].transformer_gb  # the repo's bf16 files
    assert abs(n * 2 / 1e9 - size_gb) / size_gb < 0.02, f"{name}: {n * 2 / 1e9:.2f} GB"
    if fam.name == "flux1":
        assert cfg["guidance_embeds"] is (name != "flux1-schnell")  # dev: guidance input


def test_shipped_config_is_used_when_the_base_has_no_transformer_config(tmp_path):
    from studio.core.paths import configs_dir
    from studio.engine.diffusion.flow.files import transformer_config

    base = tmp_path / "base"
    (base / "vae").mkdir(parents=True)
    assert transformer_config("flux1-schnell", base) == configs_dir() / "flux1-schnell"
    (base / "transformer").mkdir()
    (base / "transformer" / "config.json").write_text("{}")
    assert transformer_config("flux1-schnell", base) == base  # the local repo's own first
    with pytest.raises(ModelError, match="No transformer config for qwen-image-edit"):
        transformer_config("qwen-image-edit", tmp_path / "nothing")


def test_full_checkpoint_goes_to_the_pipelines_from_single_file(
    flow_models, hub, tmp_path, job, monkeypatch
):
    """A file that also holds the VAE / text encoders is a full checkpoint: the pipeline's
    own from_single_file with the local base repo as config= (recorded here; diffusers'
    conversion of a real all-in-one file is not exercised by the tiny models)."""
    from safetensors.torch import load_file, save_file

    from studio.engine.diffusion.flow import files as flow_files

    base = put_in_hf_cache(flow_models.flux1, BASES["flux1"], hub)
    src = write_transformer_file(flow_models.flux1, tmp_path / "t.safetensors")
    tensors = {f"model.diffusion_model.{k}": v for k, v in load_file(src).items()}
    tensors["vae.decoder.conv_in.weight"] = torch.zeros(4, 4, 3, 3)
    full = tmp_path / "flux1-schnell-aio.safetensors"
    save_file(tensors, str(full))
    assert flow_files.is_full_checkpoint(probe_file(full))
    assert not flow_files.is_full_checkpoint(probe_file(src))
    calls = []

    def fake(path, pipeline_class, config, dtype):
        from diffusers import DiffusionPipeline

        calls.append((path.name, pipeline_class, str(config)))
        return DiffusionPipeline.from_pretrained(config, torch_dtype=dtype, local_files_only=True)

    monkeypatch.setattr(flow_files, "load_full_checkpoint", fake)
    entry = load_flow(job().ctx, str(full), "cpu", "float32")
    assert entry.source == "checkpoint" and entry.family.name == "flux1"
    assert calls == [(full.name, "FluxPipeline", str(base))]
