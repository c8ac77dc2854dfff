"""Document model and the .studio project file: round trip, atomic save, refusal of damaged
and newer files, compositing, region snapping."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core import document as D
from studio.core.document import (
    Document,
    HistoryEntry,
    Layer,
    load_project,
    project_bytes,
    save_project,
    snap_rect,
)
from studio.core.errors import BadInput


def make_doc() -> Document:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    doc = Document.from_image(base, "photo")
    top = rng.integers(0, 256, (16, 24, 4), dtype=np.uint8)
    doc.layers.insert(
        1,
        Layer(
            "gen", "image", top, opacity=0.5, offset=(8, 4), metadata={"prompt": "a cat", "seed": 7}
        ),
    )
    doc.layers.insert(
        2, Layer("edges", "control", rng.integers(0, 256, (48, 64, 4), np.uint8), visible=False)
    )
    doc.mask_layer.pixels[10:20, 30:40] = 255
    doc.selection = (8, 8, 32, 24)
    doc.history.append(HistoryEntry(top, {"prompt": "a cat", "seed": 7}))
    doc.active_uid = doc.layers[1].uid
    return doc


def test_round_trip_keeps_everything(tmp_path):
    doc = make_doc()
    path = save_project(doc, tmp_path / "a.studio")
    got = load_project(path)
    assert (got.width, got.height) == (64, 48)
    assert [(la.name, la.kind, la.visible, la.opacity, la.offset) for la in got.layers] == [
        (la.name, la.kind, la.visible, la.opacity, la.offset) for la in doc.layers
    ]
    for a, b in zip(got.layers, doc.layers, strict=True):
        assert np.array_equal(a.pixels, D.to_rgba(b.pixels) if b.pixels.ndim == 3 else b.pixels)
    assert got.layers[1].metadata == {"prompt": "a cat", "seed": 7}
    assert got.selection == (8, 8, 32, 24)
    assert got.history[0].parameters["seed"] == 7
    assert np.array_equal(got.history[0].image, doc.history[0].image)
    assert got.active_layer.name == "gen"
    assert np.array_equal(got.composite(), doc.composite())


def test_save_is_atomic_old_file_survives_a_failed_save(tmp_path, monkeypatch):
    path = tmp_path / "a.studio"
    save_project(make_doc(), path)
    good = path.read_bytes()

    class Boom(Exception):
        pass

    def fail(self, data):
        raise Boom("disk on fire")

    from studio.core import atomic

    real = atomic.atomic_writer

    def broken_writer(p):
        cm = real(p)
        f = cm.__enter__()

        class W:
            def __enter__(self):
                return self

            def write(self, data):
                f.write(data[: len(data) // 2])
                raise Boom("crash mid-write")

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return W()

    monkeypatch.setattr(D, "atomic_writer", broken_writer)
    with pytest.raises(Boom):
        save_project(make_doc(), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["a.studio"]  # no temp file left


def _rezip(data: bytes, edit) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            content = edit(info.filename, src.read(info.filename))
            if content is not None:
                z.writestr(info.filename, content)
    return out.getvalue()


def _manifest_edit(change):
    def edit(name, content):
        if name == "manifest.json":
            m = json.loads(content)
            change(m)
            return json.dumps(m)
        return content

    return edit


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[: len(b) // 2], "not a Studio project"),
        (lambda b: b"hello", "not a Studio project"),
        (lambda b: b"", "not a Studio project"),
        (lambda b: _rezip(b, lambda n, c: None if n == "manifest.json" else c), "no manifest"),
        (lambda b: _rezip(b, lambda n, c: b"{not json" if n == "manifest.json" else c), "damaged"),
        (lambda b: _rezip(b, lambda n, c: None if n == "layers/1.png" else c), "damaged"),
        (lambda b: _rezip(b, lambda n, c: c[:40] if n == "layers/0.png" else c), "damaged"),
        (lambda b: _rezip(b, _manifest_edit(lambda m: m.update(format="other"))), "not a Studio"),
        (lambda b: _rezip(b, _manifest_edit(lambda m: m.update(version="x"))), "damaged"),
        (lambda b: _rezip(b, _manifest_edit(lambda m: m["layers"][0].update(kind="?"))), "damaged"),
        (lambda b: _rezip(b, _manifest_edit(lambda m: m.update(width=65))), "damaged"),
    ],
)
def test_damaged_projects_are_refused(tmp_path, damage, words):
    path = tmp_path / "bad.studio"
    path.write_bytes(damage(project_bytes(make_doc())))
    with pytest.raises(BadInput) as e:
        load_project(path)
    assert words in e.value.message
    assert "\n" not in e.value.message


def test_newer_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "new.studio"
    data = _rezip(project_bytes(make_doc()), _manifest_edit(lambda m: m.update(version=99)))
    path.write_bytes(data)
    with pytest.raises(BadInput, match="newer Studio"):
        load_project(path)


def test_missing_file():
    with pytest.raises(BadInput, match="no such file"):
        load_project("/nonexistent/x.studio")


def test_composite_over_with_opacity_and_offset():
    doc = Document(4, 2)
    red = np.zeros((2, 4, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    blue = np.zeros((1, 2, 4), np.uint8)
    blue[..., 2], blue[..., 3] = 255, 255
    doc.layers.insert(0, Layer("red", "image", red))
    doc.layers.insert(1, Layer("blue", "image", blue, opacity=0.5, offset=(3, 1)))
    out = doc.composite()
    assert tuple(out[0, 0]) == (255, 0, 0, 255)
    assert tuple(out[1, 3]) == (128, 0, 128, 255)  # 50% blue over red, clipped at the edge
    doc.layers[0].visible = False
    assert tuple(doc.composite()[0, 0]) == (0, 0, 0, 0)


def test_generation_region_defaults_to_whole_image_snapped():
    doc = Document.from_image(np.zeros((300, 451, 3), np.uint8))
    assert doc.generation_region() == (0, 0, 448, 296)
    doc.selection = (13, 21, 101, 75)
    assert doc.generation_region() == (8, 16, 104, 80)
    assert Document().generation_region() == (0, 0, 0, 0)


@given(
    x=st.integers(-100, 600),
    y=st.integers(-100, 600),
    w=st.integers(-300, 700),
    h=st.integers(-300, 700),
    W=st.integers(8, 520),
    H=st.integers(8, 520),
)
def test_snap_rect_stays_inside_and_on_the_grid(x, y, w, h, W, H):
    rx, ry, rw, rh = snap_rect((x, y, w, h), W, H)
    assert rx % 8 == 0 and ry % 8 == 0 and rw % 8 == 0 and rh % 8 == 0
    assert rw >= 8 and rh >= 8
    assert rx >= 0 and ry >= 0
    assert rx + rw <= W and ry + rh <= H


def test_recovery_orphans(tmp_path, monkeypatch):
    from studio.core import recovery

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    doc = make_doc()
    recovery.write_recovery(doc, "/x/a.studio")
    assert recovery.orphaned_recoveries() == []  # this process is alive
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: never a running process
    recovery.write_recovery(doc, "/x/b.studio", pid=dead_pid)
    found = recovery.orphaned_recoveries()
    assert [(p.name, s) for p, s in found] == [(f"autosave-{dead_pid}.studio", "/x/b.studio")]
    assert load_project(found[0][0]).layers[1].name == "gen"
    recovery.discard(found[0][0])
    recovery.clear_recovery()
    assert list(recovery.recovery_dir().iterdir()) == []
