"""Which planner row a model gets and the plan for a model reference
(studio.engine.diffusion.shared.memory_models): family names and hints, GGUF file names, a diffusers
folder's sizes from its safetensors headers, the user's overrides, the UI's plan line and the
device probe."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from studio.core.errors import BadInput
from studio.engine.diffusion.families import family
from studio.engine.diffusion.shared import memory_models as mm
from studio.engine.diffusion.shared.memory import MODEL_NEEDS

GB = 1e9


@pytest.fixture(autouse=True)
def _no_env_offload(monkeypatch):
    monkeypatch.delenv("STUDIO_OFFLOAD", raising=False)


# -- rows for a family and a hint -----------------------------------------------------------


def test_a_family_without_a_hint_gets_its_default_row_under_the_family_label():
    row = mm.row_for("flux1")
    assert (row.key, row.label) == ("flux1-dev", "FLUX.1")
    assert mm.row_for("flux2").label == "FLUX.2 klein"
    assert mm.row_for("flux1", "").key == "flux1-dev"


def test_a_hint_naming_a_row_of_the_family_gets_that_row_and_its_label():
    assert mm.row_for("flux1", "flux1-dev").label == "FLUX.1 dev"
    assert mm.row_for("flux1", "/models/FLUX.1_Schnell").key == "flux1-schnell"
    assert mm.row_for("qwen", "Qwen/Qwen-Image-Edit").label == "Qwen-Image-Edit"


def test_punctuation_around_a_hint_is_ignored():
    assert mm.row_for("flux1", '"flux1-fill"').key == "flux1-fill"
    assert mm.row_for("flux1", "FLUX1 Fill!").key == "flux1-fill"


def test_a_hint_naming_another_familys_row_is_ignored():
    row = mm.row_for("flux2", "sdxl")  # no "9b"/"4b" in it: the larger klein
    assert (row.key, row.label) == ("flux2-klein-9b", "FLUX.2 klein")
    assert mm.row_for("sd1", "sdxl").key == "sd15"


def test_only_the_last_part_of_a_path_hint_counts():
    assert mm.row_for("flux2", "/data/9b-models/FLUX.2-klein-4B").key == "flux2-klein-4b"
    assert mm.row_for("sd3", "/large/sd3.5-medium").key == "sd35-medium"


def test_an_unknown_variant_falls_back_to_its_base_family():
    row = mm.row_for("flux1-depth", "flux1-schnell")
    assert row.key == "flux1-schnell"
    assert mm.row_for("flux1-depth").label == "FLUX.1"
    assert mm.row_for("nope") is None and mm.row_for("nope-x") is None


def test_family_labels():
    assert mm.family_label("sd3") == "SD 3.5"
    assert mm.family_label("unknown") == "unknown"


def test_flow_families_take_the_overrides():
    assert mm.is_flow_family("flux1") and mm.is_flow_family("qwen-edit")
    assert not mm.is_flow_family("sdxl") and not mm.is_flow_family(None)


@pytest.mark.parametrize(
    "name, key",
    [
        ("/gguf/flux1-fill-dev-Q8_0.gguf", "flux1-fill"),
        ("FLUX.1-Kontext-dev-Q4_K_M.gguf", "flux1-kontext"),
        ("flux1-schnell-Q4_K_S.gguf", "flux1-schnell"),
        ("flux-2-klein-9b-Q8_0.gguf", "flux2-klein-9b"),
        ("FLUX.2-klein-4B-Q4_K_M.gguf", "flux2-klein-4b"),
        ("flux1-dev-Q8_0.gguf", "flux1-dev"),
        ("z_image_turbo-Q4_K_M.gguf", "z-image-turbo"),
        ("sd3.5_large_turbo-Q8_0.gguf", "sd35-large-turbo"),
        ("stable-diffusion-3.5-large-Q4_0.gguf", "sd35-large"),
        ("sd3.5_medium-Q8_0.gguf", "sd35-medium"),
        ("Qwen-Image-Edit-2509-Q4_K_M.gguf", "qwen-image-edit"),
        ("qwen-image-Q8_0.gguf", "qwen-image"),
    ],
)
def test_gguf_file_names_give_their_row(name, key):
    assert mm.row_from_name(name).key == key


def test_a_gguf_name_without_a_known_model_has_no_row():
    assert mm.row_from_name("/models/flux/mystery-Q8_0.gguf") is None  # the folder is no hint


@pytest.mark.parametrize(
    "name, fmt",
    [("x-Q8_0.gguf", "q8_0"), ("x-q8.gguf", "q8_0"), ("x-Q6_K.gguf", "q4_k"),
     ("/q8/x-Q4_K_M.gguf", "q4_k")],
)  # fmt: skip
def test_gguf_quant_tags(name, fmt):
    assert mm.gguf_format(name) == fmt


# -- the rows the family descriptors give ---------------------------------------------------
# The tables below are built once at import; these tests call the builders themselves.

# The variants and the base family whose weights each shares (families/flux.py, qwen.py).
VARIANT_ROWS = {"flux1-fill": "flux1", "flux1-kontext": "flux1", "qwen-image-edit": "qwen"}


def test_the_planner_rows_are_every_familys_rows_base_families_first():
    from studio.engine.diffusion.families.registry import families
    from studio.engine.diffusion.shared import memory

    rows = memory._rows()
    declared = {n.key: n for f in families() for n in f.memory}
    assert set(rows) == set(declared)
    assert all(rows[k] is declared[k] for k in declared)
    keys = list(rows)
    first_variant = min(keys.index(k) for k in VARIANT_ROWS)
    assert first_variant == len(keys) - len(VARIANT_ROWS), keys


def test_the_plan_table_lists_sd_first_then_the_flow_models_and_no_variants():
    from studio.engine.diffusion.shared.memory import table_models

    keys = table_models()
    assert keys[:3] == ("sd15", "sd21", "sdxl")
    assert {"flux1-dev", "flux1-schnell", "flux2-klein-9b", "qwen-image", "sd35-large"} <= set(
        keys[3:]
    )
    assert not set(VARIANT_ROWS) & set(keys)
    assert all(MODEL_NEEDS[k].quantizable for k in keys[3:])


def test_family_rows_give_the_label_the_default_row_and_the_hints():
    rows = mm._family_rows()
    assert rows["flux1"] == mm.FamilyRows(
        "FLUX.1", "flux1-dev", (("schnell", "flux1-schnell"), ("dev", "flux1-dev"))
    )
    # Qwen-Image has one row and no declared default: that row is the default.
    assert rows["qwen"] == mm.FamilyRows("Qwen-Image", "qwen-image", (("edit", "qwen-image-edit"),))
    assert rows["sdxl"] == mm.FamilyRows("SDXL", "sdxl", ())


def test_gguf_name_patterns_try_the_most_specific_family_first():
    pats = mm._name_rows()
    assert ("kontext", "flux1-kontext") in pats
    generic = pats.index((r"flux(?!-?2)", "flux1-dev"))
    assert pats.index(("kontext", "flux1-kontext")) < generic
    assert pats.index((r"flux-?1.*fill|fill.*flux", "flux1-fill")) < generic


# -- sizes from a diffusers folder ----------------------------------------------------------


def _write(folder, name, *shapes):
    folder.mkdir(parents=True, exist_ok=True)
    data = {f"t{i}": torch.zeros(s, dtype=torch.float16) for i, s in enumerate(shapes)}
    save_file(data, str(folder / name))


def test_a_unet_folder_counts_each_component_once(tmp_path):
    _write(tmp_path / "unet", "diffusion_pytorch_model.safetensors", (100, 10))  # 1,000
    _write(tmp_path / "text_encoder", "model.safetensors", (20, 10))  # 200
    _write(tmp_path / "text_encoder_2", "model-00001-of-00002.safetensors", (30,))  # sharded
    _write(tmp_path / "text_encoder_2", "model-00002-of-00002.safetensors", (40,))
    (tmp_path / "text_encoder_3.json").write_text("{}")  # not a folder
    assert mm.folder_sizes(tmp_path) == pytest.approx((2000 / GB, 540 / GB, 0.0))
    needs = mm.needs_for("sd1", None, tmp_path)
    assert needs.transformer_gb == pytest.approx(2000 / GB)
    assert needs.work_gb == MODEL_NEEDS["sd15"].work_gb  # the row keeps its working memory
    assert needs.label == "SD 1.x"


def test_only_variant_files_count_one_variant(tmp_path):
    # the first variant by name (bf16), not both, not the other one
    _write(tmp_path / "transformer", "diffusion_pytorch_model.bf16.safetensors", (10, 10))
    _write(tmp_path / "transformer", "diffusion_pytorch_model.fp16.safetensors", (20, 10))
    _write(tmp_path / "vae", "diffusion_pytorch_model.fp16-00001-of-00002.safetensors", (5,))
    _write(tmp_path / "vae", "diffusion_pytorch_model.fp16-00002-of-00002.safetensors", (6,))
    assert mm.folder_sizes(tmp_path) == pytest.approx((200 / GB, 0.0, 22 / GB))


def test_the_transformer_is_taken_before_a_unet(tmp_path):
    _write(tmp_path / "transformer", "a.safetensors", (7,))
    _write(tmp_path / "unet", "a.safetensors", (9,))
    assert mm.folder_sizes(tmp_path)[0] == pytest.approx(14 / GB)


def test_folders_without_readable_denoiser_weights_have_no_sizes(tmp_path):
    assert mm.folder_sizes(tmp_path) is None  # no transformer / unet
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    assert mm.folder_sizes(tmp_path) is None  # .bin only
    assert mm.needs_for("sd1", None, tmp_path) == MODEL_NEEDS["sd15"].__class__(
        **{**MODEL_NEEDS["sd15"].__dict__, "label": "SD 1.x"}
    )
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x01")
    assert mm.folder_sizes(tmp_path) is None  # a broken header
    assert mm.needs_for("nope", None, tmp_path) is None
    assert mm.needs_for("sd1").key == "sd15"


# -- overrides and plans --------------------------------------------------------------------


def test_studio_offload_is_read_trimmed_and_lowercase(monkeypatch):
    assert mm.env_offload() is None
    monkeypatch.setenv("STUDIO_OFFLOAD", "  Model ")
    assert mm.env_offload() == "model"
    monkeypatch.setenv("STUDIO_OFFLOAD", " ")
    assert mm.env_offload() is None


def test_auto_formats_are_the_load_time_conversions_installed(monkeypatch):
    monkeypatch.setattr(mm, "available_formats", lambda: frozenset(mm.WEIGHT_FORMATS))
    assert mm.auto_formats() == ("bf16", "fp8", "nf4")  # never a GGUF file
    monkeypatch.setattr(mm, "available_formats", lambda: frozenset({"bf16", "fp8", "q8_0"}))
    assert mm.auto_formats() == ("bf16", "fp8")


def test_bad_overrides_name_the_choices():
    with pytest.raises(BadInput, match=r"^Unknown quant 'int8' \(use auto, bf16, fp8, q8_0, nf4"):
        mm.check_overrides("int8", None)
    with pytest.raises(BadInput, match=r"^Unknown offload 'disk' \(use auto, none, model, group"):
        mm.check_overrides(None, "disk")
    mm.check_overrides("q4_k", "sequential")  # valid values pass
    # checked before the family is looked up
    with pytest.raises(BadInput, match="Unknown quant"):
        mm.plan_for_family("nope", 8, quant="int8")
    with pytest.raises(BadInput, match="Unknown offload"):
        mm.plan_for_model("nope", 8, offload="disk")
    with pytest.raises(BadInput, match="Unknown offload"):
        mm.plan_for_family("nope", 8, offload="disk")
    with pytest.raises(BadInput, match="Unknown quant"):
        mm.plan_for_model("nope", 8, quant="int8")
    # plan_for_needs checks them too, with the values the overrides take
    needs = MODEL_NEEDS["flux1-dev"]
    with pytest.raises(BadInput, match=r"^Unknown quant 'int8' \(use auto, "):
        mm.plan_for_needs(needs, 8, quant="int8")
    with pytest.raises(BadInput, match=r"^Unknown offload 'disk' \(use auto, "):
        mm.plan_for_needs(needs, 8, offload="disk")


def test_a_unet_family_refuses_quantized_weights_with_the_reason():
    with pytest.raises(
        BadInput, match=r"^SD 1\.x runs in fp16: quantized weights \(--quant nf4\)"
    ) as e:
        mm.plan_for_family("sd1", 8, quant="nf4")
    # where quantized weights do apply
    assert str(e.value).endswith(f"flow families ({mm.quant_family_labels()})")
    # every family whose planner rows take quantized weights is named, and no UNet family
    quantizable = {n.family for n in MODEL_NEEDS.values() if n.quantizable}
    assert quantizable >= {"flux1", "flux2", "zimage", "sd3", "qwen"}
    for name in quantizable:
        assert family(name).label in mm.quant_family_labels()
    assert "SD 1.x" not in mm.quant_family_labels() and "SDXL" not in mm.quant_family_labels()
    assert mm.plan_for_family("sd1", 8, quant="bf16").weights == "bf16"
    # fp16 is all a UNet family has: asking for it forces nothing
    assert not mm.plan_for_family("sd1", 8, quant="bf16").forced
    assert mm.plan_for_family("zimage", 24, quant="bf16").forced
    assert mm.plan_for_family("sd1", None, quant="nf4") is None  # on the CPU nothing to plan


def test_plans_use_the_auto_formats_by_default(monkeypatch):
    monkeypatch.setattr(mm, "auto_formats", lambda: ("bf16",))
    p = mm.plan_for_family("flux1", 20, ram_gib=64)
    assert p.weights == "bf16" and p.text_weights == "bf16" and p.offload != "none"
    p = mm.plan_for_family("flux1", 20, ram_gib=64, formats=("bf16", "fp8"))
    assert p.weights == "fp8"  # 20 GiB: fp8 with model offload beats bf16 group offload


def test_plans_pass_the_size_the_ram_and_the_overrides_on(monkeypatch):
    monkeypatch.setattr(mm, "auto_formats", lambda: ("bf16", "fp8"))  # as without bitsandbytes
    free = 30
    native = mm.plan_for_family("zimage", free, quant="bf16", offload="none")
    big = mm.plan_for_family("zimage", free, 2048 * 2048, quant="bf16", offload="none")
    assert big.peak_gib > native.peak_gib
    tight = mm.plan_for_family("zimage", 12, offload="model", quant="bf16", ram_gib=8)
    assert tight.ram_budget_gib == 4.0 and not tight.fits
    p = mm.plan_for_family("sd3", 8, hint="sd3.5-medium", quant="fp8", ram_gib=64)
    assert (p.needs.key, p.weights) == ("sd35-medium", "fp8")
    p = mm.plan_for_model("flux1-schnell", 12, 2048 * 2048, quant="fp8", offload="model",
                          ram_gib=64, formats=("bf16",))  # fmt: skip
    assert (p.needs.key, p.weights, p.offload, p.ram_budget_gib) == (
        "flux1-schnell", "fp8", "model", 60.0,
    )  # fmt: skip
    assert (
        p.peak_gib > mm.plan_for_model("flux1-schnell", 12, quant="fp8", offload="model").peak_gib
    )
    # formats: bf16 only keeps a 20 GiB card from the fp8 model-offload plan Auto picks
    assert mm.plan_for_model("flux1-schnell", 20, ram_gib=64).weights == "fp8"
    assert mm.plan_for_model("flux1-schnell", 20, ram_gib=64, formats=("bf16",)).weights == "bf16"


def test_plans_for_a_folder_use_its_sizes(tmp_path):
    _write(tmp_path / "transformer", "a.safetensors", (1000, 1000))  # 2 MB
    p = mm.plan_for_family("flux1", 8, folder=tmp_path, quant="bf16", offload="model")
    assert p.ram_gib == pytest.approx(0.0, abs=0.01) and p.needs.transformer_gb == 0.002


def test_the_env_offload_applies_to_a_model_reference(monkeypatch):
    monkeypatch.setenv("STUDIO_OFFLOAD", "group")
    assert mm.plan_for_model("flux1-schnell", 80).offload == "group"


# -- model references -----------------------------------------------------------------------


def test_gguf_references_fix_the_format():
    g = mm.model_needs("  /x/FLUX1-DEV-Q4_K_S.GGUF ")
    assert (g.needs.key, g.family, g.quant) == ("flux1-dev", "flux1", "q4_k")
    assert mm.model_needs("/x/mystery-Q8_0.gguf") is None
    p = mm.plan_for_model("/x/flux1-dev-Q8_0.gguf", 12, quant="q8_0")
    assert p.weights == "q8_0"
    with pytest.raises(BadInput, match=r"^flux1-dev-Q4_0\.gguf is a Q4_K GGUF file: drop --quant"):
        mm.plan_for_model("/x/flux1-dev-Q4_0.gguf", 12, quant="q8_0")


def test_unknown_references_have_no_plan():
    assert mm.model_needs("   ") is None and mm.model_needs(None) is None
    assert mm.model_needs("no-such-model-anywhere") is None
    assert mm.plan_for_model("no-such-model-anywhere", 12) is None
    assert mm.plan_for_model("flux1-schnell", None) is None


def test_a_catalog_id_not_installed_gets_its_row():
    n = mm.model_needs("flux1-schnell")
    assert (n.needs.key, n.family, n.quant) == ("flux1-schnell", "flux1", None)
    n = mm.model_needs("sd35-large-turbo")
    assert (n.needs.key, n.family) == ("sd35-large-turbo", "sd3")


def test_another_catalog_model_gets_its_base_familys_row():
    n = mm.model_needs("dreamshaper-8")
    assert (n.family, n.needs.key, n.needs.label) == ("sd1", "sd15", "SD 1.x")


def _fake_installed(monkeypatch, family, resolved, ref):
    """model_info and resolve_model as for ``ref`` installed (and nothing else)."""
    from studio.engine.diffusion.shared import defaults, loader

    def info(r):
        return (SimpleNamespace(name=family), None) if r == ref else None

    def resolve(r):
        if isinstance(resolved, Exception) or r != ref:
            raise RuntimeError("not installed")
        return resolved

    monkeypatch.setattr(defaults, "model_info", info)
    monkeypatch.setattr(loader, "resolve_model", resolve)


def test_an_installed_folder_is_planned_with_its_sizes(monkeypatch, tmp_path):
    _write(tmp_path / "transformer", "a.safetensors", (1000, 500))  # 1 MB
    resolved = SimpleNamespace(kind="folder", path=tmp_path, name="FLUX.1-schnell")
    _fake_installed(monkeypatch, "flux1", resolved, str(tmp_path))
    n = mm.model_needs(str(tmp_path))
    assert (n.family, n.needs.key, n.quant) == ("flux1", "flux1-schnell", None)
    assert n.needs.transformer_gb == pytest.approx(1e6 / GB)


def test_an_installed_file_is_planned_by_its_name(monkeypatch, tmp_path):
    resolved = SimpleNamespace(kind="file", path=tmp_path / "x.safetensors", name="flux1-schnell")
    _fake_installed(monkeypatch, "flux1", resolved, "my-model")
    n = mm.model_needs("my-model")
    assert n.needs == MODEL_NEEDS["flux1-schnell"]  # the file is not read for sizes


def test_an_unresolvable_reference_keeps_the_family_and_its_own_name(monkeypatch):
    _fake_installed(monkeypatch, "sd3", RuntimeError("gone"), "my-sd3.5-medium")
    n = mm.model_needs("my-sd3.5-medium")
    assert (n.family, n.needs.key) == ("sd3", "sd35-medium")
    _fake_installed(monkeypatch, "no-such-family", RuntimeError("gone"), "whatever")
    assert mm.model_needs("whatever") is None


def test_an_inpainting_catalog_model_gets_its_base_row():
    n = mm.model_needs("sd15-inpaint")
    assert (n.family, n.needs.key) == ("sd1", "sd15")


def _fake_catalog(monkeypatch, *entries):
    """A catalog of ``entries``, none of them installed."""
    from studio.core import catalog
    from studio.engine.diffusion.shared import defaults

    monkeypatch.setattr(defaults, "model_info", lambda ref: None)
    monkeypatch.setattr(catalog, "load_catalog", lambda: list(entries))


def test_catalog_models_by_kind_base_and_name(monkeypatch):
    def entry(id, kind, bases):
        return SimpleNamespace(id=id, kind=kind, bases=bases)

    _fake_catalog(
        monkeypatch,
        entry("my-schnell-mix", "txt2img", ("flux1",)),
        entry("my-editor", "edit", ("qwen",)),
        entry("my-fill", "inpaint", ("sd1",)),
        entry("my-lora", "lora", ("sd1",)),
        entry("my-odd", "txt2img", ("no-such-family",)),
        entry("my-baseless", "txt2img", ()),
    )
    n = mm.model_needs("my-schnell-mix")  # the catalog id is the hint
    assert (n.family, n.needs.key) == ("flux1", "flux1-schnell")
    assert mm.model_needs("my-editor").needs.key == "qwen-image-edit"
    assert mm.model_needs("my-fill").needs.key == "sd15"
    assert mm.model_needs("my-lora") is None  # not a model that is planned
    assert mm.model_needs("my-odd") is None  # a base the planner has no row for
    assert mm.model_needs("my-baseless") is None


def test_no_catalog_no_plan(monkeypatch):
    from studio.core import catalog
    from studio.engine.diffusion.shared import defaults

    def broken():
        raise OSError("no catalog")

    monkeypatch.setattr(defaults, "model_info", lambda ref: None)  # not installed
    monkeypatch.setattr(catalog, "load_catalog", broken)
    assert mm.model_needs("dreamshaper-8") is None


# -- the plan line and the device probe -----------------------------------------------------


def test_the_plan_line():
    p = mm.plan_for_family("sdxl", 12)
    assert mm.plan_line(p) == f"Plan: {p.summary()}" == mm.plan_line(p, "cuda")
    assert mm.plan_line(p, "mps").startswith("Plan: ")
    line = mm.plan_line(None)
    assert line.startswith("Plan: decided when the model loads") and "not known" in line
    assert mm.plan_line(p, "cpu").startswith("CPU: no memory plan, runs in float32")


def _device(monkeypatch, kind, free=None):
    from studio.engine.jobs import device as jobs_device

    asked = []

    def pick(d=None):
        asked.append(d)
        return SimpleNamespace(device=torch.device(kind))

    def probe(dev):  # answers only for the device picked
        return free if dev == torch.device(kind) else (1, 1)

    monkeypatch.setattr(jobs_device, "pick_device", pick)
    monkeypatch.setattr(jobs_device, "free_bytes", probe)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_name",
        lambda dev=None: "Fake GPU" if dev == torch.device(kind) else "?",
    )
    return asked


def test_device_memory_on_the_cpu(monkeypatch):
    asked = _device(monkeypatch, "cpu")
    assert mm.device_memory("cpu") == {
        "device": "cpu", "name": "CPU", "free_gib": None, "total_gib": None,
    }  # fmt: skip
    assert asked == ["cpu"]


def test_device_memory_on_a_gpu(monkeypatch):
    _device(monkeypatch, "cuda", (3 * 2**30, 8 * 2**30))
    assert mm.device_memory() == {
        "device": "cuda", "name": "Fake GPU", "free_gib": 3.0, "total_gib": 8.0,
    }  # fmt: skip
    _device(monkeypatch, "cuda", None)  # a GPU that reports no free memory
    assert mm.device_memory() == {
        "device": "cuda", "name": "Fake GPU", "free_gib": None, "total_gib": None,
    }  # fmt: skip


def test_device_memory_on_apple_silicon(monkeypatch):
    from studio.engine.diffusion.shared import placement

    _device(monkeypatch, "mps")
    monkeypatch.setattr(
        placement, "free_memory_gib", lambda dev: 5.5 if dev == torch.device("mps") else 1.0
    )
    assert mm.device_memory() == {
        "device": "mps", "name": "Apple GPU (MPS)", "free_gib": 5.5, "total_gib": None,
    }  # fmt: skip


def test_families_map_planner_keys_back():
    assert mm._KEY_FAMILY["qwen-image-edit"] == "qwen-edit"
    assert mm._KEY_FAMILY["flux1-schnell"] == "flux1"
    n = mm.model_needs("qwen-image-edit")
    assert (n.family, n.needs.key) == ("qwen-edit", "qwen-image-edit")
