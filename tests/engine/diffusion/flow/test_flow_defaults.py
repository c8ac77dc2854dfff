"""Settings of a flow model named by a repo id or a folder, not a catalog id: its model's
(MODELS.md, from the model cards: Z-Image Turbo 8 steps without guidance, SD 3.5 Large Turbo
4 steps without guidance), never SD-Turbo's one-step name rule."""

from __future__ import annotations

import shutil

from studio.engine.diffusion.shared.defaults import recommended_settings, repo_catalog_id


def _copy(src, dest):
    if not dest.exists():
        shutil.copytree(src, dest)
    return dest


def test_repo_ids_of_turbo_flow_models_get_their_model_cards_steps():
    assert repo_catalog_id("Tongyi-MAI/Z-Image-Turbo") == "z-image-turbo"
    z = recommended_settings("Tongyi-MAI/Z-Image-Turbo")
    assert (z["steps"], z["guidance"]) == (8, 0.0)
    sd35 = recommended_settings("stabilityai/stable-diffusion-3.5-large-turbo")
    assert (sd35["steps"], sd35["guidance"]) == (4, 0.0)


def test_a_folder_named_as_the_repo_is_that_model(flow_models, tmp_path):
    folder = _copy(flow_models.zimage, tmp_path / "Z-Image-Turbo")
    rec = recommended_settings(str(folder))
    assert (rec["steps"], rec["guidance"], rec["family"]) == (8, 0.0, "zimage")


def test_a_hub_cache_snapshot_is_its_repo(flow_models, tmp_path):
    snap = tmp_path / "models--stabilityai--stable-diffusion-3.5-large-turbo" / "snapshots" / "0a1b"
    snap.parent.mkdir(parents=True)
    folder = _copy(flow_models.sd3, snap)
    rec = recommended_settings(str(folder))
    assert (rec["steps"], rec["guidance"]) == (4, 0.0)


def test_an_unknown_turbo_flow_folder_gets_its_family_not_one_step(flow_models, tmp_path):
    folder = _copy(flow_models.zimage, tmp_path / "my-zimage-turbo-finetune")
    assert repo_catalog_id(str(folder)) is None
    rec = recommended_settings(str(folder))
    assert rec["steps"] == 8  # Z-Image's distilled schedule, not the SD-Turbo rule's 1


def test_sd_turbo_by_repo_keeps_its_one_step():
    rec = recommended_settings("stabilityai/sd-turbo")
    assert (rec["steps"], rec["guidance"]) == (1, 0.0)  # SD-Turbo's card: 1 step, no guidance
