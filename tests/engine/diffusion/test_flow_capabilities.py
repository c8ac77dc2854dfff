"""The capability table is generated from the descriptors (no hand-written rows)."""

from __future__ import annotations

from studio.engine.diffusion.capabilities import all_families, capability_row, render_capabilities


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


def test_flow_rows_do_not_promise_what_the_job_path_does_not_run():
    """Single files and GGUF run through load_flow for every flow family (tested in
    flow/test_flow_single_files.py); a config not shipped in models/configs is starred (the
    file then takes its config from the base model's download). What is still "not yet" is
    only NOT_YET_FOR_FLOW, and never on the SD rows."""
    from studio.engine.diffusion.capabilities import NOT_YET_FOR_FLOW

    fams = {f.name: f for f in all_families()}
    assert capability_row(fams["flux1"])["single files"] == "flux1-schnell, flux1-dev"
    assert capability_row(fams["flux1-fill"])["single files"] == "flux1-fill*"
    assert capability_row(fams["sd3"])["single files"] == "sd35-medium*, sd35-large"
    for fam in all_families():
        row = capability_row(fam)
        if fam.prediction == "flow":
            assert row["GGUF"] == "yes", fam.name
            assert row["single files"] not in ("-", "not yet"), fam.name
            assert all(row[c] == "not yet" for c in NOT_YET_FOR_FLOW), fam.name
        else:
            assert "not yet" not in row.values()
