"""The capability table is generated from the descriptors (no hand-written rows)."""

from __future__ import annotations

from studio.engine.diffusion.shared.capabilities import (
    all_families,
    capability_row,
    render_capabilities,
)


def test_every_family_has_a_row():
    fams = all_families()
    names = [f.name for f in fams]
    assert {"sd1", "sd2", "sdxl", "flux1", "flux1-fill", "flux2", "zimage", "sd3", "qwen"} <= set(
        names
    )
    table = render_capabilities(fams).splitlines()
    assert len(table) == 2 + len(fams)
    assert table[0].startswith("| family | txt2img | img2img | inpaint | ControlNet | LoRA |")


def test_rows_follow_the_descriptors():
    fams = {f.name: f for f in all_families()}
    fill = capability_row(fams["flux1-fill"])
    assert (fill["txt2img"], fill["img2img"], fill["inpaint"]) == ("-", "-", "yes")
    assert capability_row(fams["flux1-kontext"])["img2img"] == "edit"
    assert capability_row(fams["flux2"])["img2img"] == "-"  # klein edits via image=, no strength
    assert capability_row(fams["sdxl"])["ControlNet"] == "txt2img, img2img, inpaint"
    assert capability_row(fams["flux1"])["previews"] == "latent, taef1"
    assert capability_row(fams["sd1"])["GGUF"] == "-"
    assert capability_row(fams["sd1"])["single files"] == "sd15, sd15-inpaint"  # shipped
    assert capability_row(fams["sdxl"])["single files"] == "sdxl, sdxl-inpaint"
    for name in ("flux1", "sd3", "zimage", "qwen", "flux2", "sd1", "sdxl"):
        assert capability_row(fams[name])["LoRA"] == "yes", name


def test_flow_rows_say_what_the_job_path_runs():
    """Single files and GGUF run through load_flow for every flow family (tested in
    flow/test_flow_single_files.py); a config not shipped in models/configs is starred (the
    file then takes its config from the base model's download). ControlNet lists the tasks
    run_flow_generate wires (flow/test_flow_controlnet.py): SD3 / Qwen inpainting with a
    ControlNet needs an inpainting ControlNet and is refused, so it is not listed."""
    fams = {f.name: f for f in all_families()}
    assert capability_row(fams["flux1"])["single files"] == "flux1-schnell, flux1-dev"
    assert capability_row(fams["flux1-fill"])["single files"] == "flux1-fill*"
    assert capability_row(fams["sd3"])["single files"] == "sd35-medium*, sd35-large"
    cn = {name: capability_row(fams[name])["ControlNet"] for name in fams}
    assert cn["flux1"] == "txt2img, img2img, inpaint"
    assert (cn["zimage"], cn["sd3"], cn["qwen"]) == ("txt2img, inpaint", "txt2img", "txt2img")
    assert cn["flux2"] == cn["flux1-fill"] == "-"  # diffusers has no ControlNet pipeline
    for fam in all_families():
        row = capability_row(fam)
        assert "not yet" not in row.values()
        if fam.prediction == "flow":
            assert row["GGUF"] == "yes" and row["single files"] != "-", fam.name


def test_the_readme_table_is_the_generated_one():
    """The README's capability table is render_capabilities()'s output (regenerate it when a
    descriptor changes)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    assert render_capabilities() in readme
