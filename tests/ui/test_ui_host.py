"""MainWindow implements the Host protocol panels are written against."""

from __future__ import annotations

import inspect

from studio.ui.host import Host


def test_main_window_implements_host(window):
    names = [n for n in vars(Host) if not n.startswith("_")]
    assert {"worker", "composite", "add_layer", "show_error", "add_panel"} <= set(names)
    for name in names:
        assert hasattr(window, name), name
        proto = getattr(Host, name)
        if callable(proto) and not isinstance(proto, property):
            impl = getattr(window, name)
            want = list(inspect.signature(proto).parameters)[1:]  # without self
            got = list(inspect.signature(impl).parameters)
            assert got[: len(want)] == want, (name, got, want)
    w = window.worker
    for sig in ("started", "progress", "preview", "finished", "failed", "cancelled"):
        assert hasattr(w, sig)
    assert callable(w.submit) and callable(w.cancel)


def test_host_calls_on_empty_and_loaded_document(window, photos):
    import numpy as np

    assert window.image_size() == (0, 0)
    assert window.composite() is None and window.mask() is None
    assert window.active_layer_image() is None
    assert window.selection_rect() == (0, 0, 0, 0)
    window.add_layer(np.zeros((40, 56, 3), np.uint8), "first")
    assert window.image_size() == (56, 40)  # the first layer sizes the document
    window.add_layer(np.zeros((40, 56, 4), np.uint8), "guide", kind="control")
    assert window.model.doc.active_layer.is_mask  # adding a layer does not retarget the brush
    assert window.active_layer_image() is None  # the mask is no image layer
    window.model.set_active(window.model.doc.layers[1].uid)
    assert window.active_layer_image().shape == (40, 56, 4)
    window.set_mask(np.full((40, 56), 255, np.uint8))
    assert window.mask().min() == 255
    window.show_preview(np.zeros((8, 8, 4), np.uint8), (0, 0, 16, 16))
    assert window.canvas.preview_item.isVisible()
    window.clear_preview()
    assert not window.canvas.preview_item.isVisible()
    window.model.undo.undo()
    window.model.undo.undo()
    window.model.undo.undo()
    assert window.image_size() == (0, 0)
