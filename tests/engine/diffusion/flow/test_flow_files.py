"""Single files of the flow families through flow_files: a config folder exported from a repo
(configs and tokenizers only), transformer-only .safetensors (FLUX.2 klein, Z-Image) and a
GGUF FLUX.1 transformer loaded offline with that config, joined to the pipeline, run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.errors import ModelError
from studio.engine.diffusion.flow.files import (
    export_config,
    load_transformer_file,
    pipeline_with_transformer,
)


def _run(pipe, **kw):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        **kw,
    ).images[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_export_config_has_no_weights(flow_models, tmp_path):
    cfg = export_config(flow_models.flux1, tmp_path / "flux1-cfg")
    files = {p.relative_to(cfg).as_posix() for p in cfg.rglob("*") if p.is_file()}
    assert {"model_index.json", "transformer/config.json", "vae/config.json"} <= files
    assert any(f.startswith("tokenizer_2/") for f in files)
    assert not any(f.endswith((".safetensors", ".bin", ".gguf")) for f in files)
    with pytest.raises(ModelError, match="no model_index.json"):
        export_config(tmp_path, tmp_path / "x")


@pytest.mark.parametrize(
    "name,cls",
    [("flux2", "Flux2Transformer2DModel"), ("zimage", "ZImageTransformer2DModel")],
)
def test_transformer_only_file_with_local_config(flow_models, tmp_path, name, cls):
    from safetensors.torch import load_file, save_file

    folder = getattr(flow_models, name)
    cfg = export_config(folder, tmp_path / "cfg")
    src = next((folder / "transformer").glob("*.safetensors"))
    path = tmp_path / f"{name}-transformer.safetensors"
    save_file(load_file(src), path)
    tr = load_transformer_file(path, cls, cfg, torch.float32)
    pipe = pipeline_with_transformer(folder, tr, torch.float32)
    ref = pipeline_with_transformer(
        folder, load_transformer_file(path, cls, cfg, torch.float32), torch.float32
    )
    kw = {"guidance_scale": 0.0} if name == "zimage" else {}
    assert np.array_equal(_run(pipe, **kw), _run(ref, **kw))  # loads the same weights every time


def test_gguf_file_through_flow_files(flow_models, tmp_path):
    pytest.importorskip("gguf")
    from studio.engine.fixtures.tiny_flow_models import write_gguf_transformer

    cfg = export_config(flow_models.flux1, tmp_path / "cfg")
    path = write_gguf_transformer(flow_models.flux1, tmp_path / "flux-Q8_0.gguf")
    tr = load_transformer_file(path, "FluxTransformer2DModel", cfg, torch.float32)
    img = _run(pipeline_with_transformer(flow_models.flux1, tr, torch.float32))
    assert img.shape == (64, 64, 3) and img.std() > 0


def test_wrong_file_is_one_clear_error(flow_models, tmp_path):
    from safetensors.torch import save_file

    cfg = export_config(flow_models.flux1, tmp_path / "cfg")
    bad = tmp_path / "bad.safetensors"
    save_file({"nothing": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="bad.safetensors: cannot load as FluxTransformer2DModel"):
        load_transformer_file(bad, "FluxTransformer2DModel", cfg, torch.float32)
