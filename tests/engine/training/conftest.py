"""Synthetic training images (32-64 px, several aspect ratios) and a request factory for
the training tests, on the tiny SD models of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZES = ((64, 64), (48, 64), (64, 40), (32, 32))  # (w, h)


def write_images(folder: Path, sizes=SIZES) -> list[Path]:
    """Smooth synthetic "photos" of one subject: gradients with a disc, one per size."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack(
            [(xx * 4 + i * 40) % 256, (yy * 4) % 256, np.full_like(xx, 128 + i * 20)], -1
        ).astype(np.uint8)
        disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2
        img[disc] = (220, 40, 40)
        path = folder / f"subject_{i}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for these tests: the tiny models' ops are too small to split, and on a
    shared, busy machine two spinning threads make every step many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("subject"))


@pytest.fixture
def make_request(tiny_models, train_images):
    """TrainLoraRequest on the tiny SD model with settings that train visibly in 30 steps."""
    from studio.engine.jobs import TrainLoraRequest

    def make(out: Path, **kw):
        base = dict(
            model=str(tiny_models.sd),
            images=tuple(str(p) for p in train_images),
            trigger="sks",
            steps=30,
            rank=4,
            lr=1e-2,
            resolution=64,
            seed=0,
            batch_size=4,
            checkpoint_every=0,
            out=str(out) if out is not None else None,
        )
        base.update(kw)
        return TrainLoraRequest(**base)

    return make
