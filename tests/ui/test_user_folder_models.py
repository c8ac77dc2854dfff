"""Add folder… with a folder of diffusers models, in the real window: every panel that can use
them lists each by its folder name (Generate and Inpaint; not by full path, and not only
under a checkpoints/ sub-folder), and the Models panel lists them with where they are."""

from __future__ import annotations

import shutil


def test_a_folder_of_diffusers_models_shows_in_every_panel(qtbot, window, tiny_models, tmp_path):
    gen = window.panels["Generate"]
    inpaint = window.panels["Inpaint"]
    models = window.panels["Models"]
    lib = tmp_path / "A1111 diffusers"
    shutil.copytree(tiny_models.sd, lib / "tiny-sd")  # at the top: no checkpoints/ folder
    shutil.copytree(tiny_models.sd_inpaint, lib / "fills" / "tiny-sd-inpaint")
    with qtbot.waitSignal(window.models_updated, timeout=30000):
        models.add_folder(str(lib))
    qtbot.waitUntil(lambda: not models.jobs, timeout=30000)

    # Generate: listed by name (the row's data is the path), installed before the downloads
    refs = [gen.model_combo.itemData(i) for i in range(gen.model_combo.count())]
    labels = [gen.model_combo.itemText(i) for i in range(gen.model_combo.count())]
    for name in ("tiny-sd", "tiny-sd-inpaint"):
        i = next(i for i, r in enumerate(refs) if r and r.endswith(name))
        assert labels[i].startswith(name) and str(lib) not in labels[i], labels[i]
        assert "download" not in labels[i]
    assert gen.state.model == str(lib / "tiny-sd")  # an installed model, picked

    # Inpaint: by name too, the path behind it
    rows = {r.ref: r for r in inpaint.model_combo.rows()}
    assert rows[str(lib / "tiny-sd")].text == "tiny-sd"
    assert rows[str(lib / "fills" / "tiny-sd-inpaint")].text == "tiny-sd-inpaint"
    i = inpaint.model_combo.find_ref(str(lib / "fills" / "tiny-sd-inpaint"))
    assert inpaint.model_combo.itemText(i) == "tiny-sd-inpaint"
    inpaint.model_combo.setCurrentIndex(i)
    assert inpaint.state.model == str(lib / "fills" / "tiny-sd-inpaint")  # the path is sent

    # Models panel: listed, with where they are
    found = {m.name: m for m in models.found}
    assert {"tiny-sd", "tiny-sd-inpaint"} <= set(found)
    assert found["tiny-sd-inpaint"].kind == "inpaint"
    assert "Found 2 models" in models.status_label.text()
