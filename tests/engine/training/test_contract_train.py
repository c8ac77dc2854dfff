"""TrainLoraRequest under the job contract of tests/engine/jobs/test_contract.py (events in
order with the job id; a cancel stops the job with Cancelled and no VAE decode runs after it;
a failure is Failed and the runner then runs the next job), plus training's own promises: a
cancel mid-run leaves a checkpoint, and the mixed-precision path (half weights, fp32 LoRA,
autocast, gradient scaler) trains, checkpoints and resumes (exercised on the CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from studio.core.cancel import CancelToken
from studio.engine.jobs import Cancelled, Finished, Progress, Runner, TrainLoraRequest

_spec = importlib.util.spec_from_file_location(
    "studio_tests_job_contract", Path(__file__).parents[1] / "jobs" / "test_contract.py"
)
_contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)
JobContract = _contract.JobContract


@pytest.fixture
def runner():
    return Runner(device="cpu")


class TestTrainLora(JobContract):
    cancel_at = 6  # during training (the first Progress events are loading and preparing)
    bad_exit_code = 2

    @pytest.fixture(autouse=True)
    def _setup(self, tiny_models, train_images, tmp_path):
        self.model = tiny_models.sd
        self.images = tuple(str(p) for p in train_images)
        self.out = tmp_path / "c.safetensors"

    def request(self):
        return TrainLoraRequest(
            model=str(self.model),
            images=self.images,
            trigger="sks",
            steps=4,
            rank=4,
            lr=1e-2,
            resolution=64,
            checkpoint_every=0,
            sample_every=2,
            sample_steps=2,
            out=str(self.out),
        )

    def bad_request(self):
        return TrainLoraRequest(
            model=str(self.model), images=self.images, trigger="sks", steps=0, out=str(self.out)
        )

    def watch(self, monkeypatch, token: CancelToken) -> list[bool]:
        return _contract._watch_vae_decode(monkeypatch, token)

    def after_cancel(self, final: Cancelled) -> None:
        assert not self.out.exists()
        if final.step > 0:  # cancelled after a step: that step is checkpointed
            folder = self.out.parent / ".c.training" / "checkpoints" / f"step-{final.step:06d}"
            assert folder.is_dir()


def test_mixed_precision_path_trains_checkpoints_and_resumes(
    tiny_models, train_images, tmp_path, monkeypatch
):
    """The GPU recipe (fp16 frozen weights, fp32 LoRA, autocast, GradScaler) on the CPU."""
    from studio.engine.training import trainer

    monkeypatch.setattr(trainer, "precision", lambda device, req: (torch.float16, "fp16", None))
    out = tmp_path / "mp.safetensors"
    request = TrainLoraRequest(
        model=str(tiny_models.sdxl),
        images=tuple(str(p) for p in train_images[:2]),
        trigger="sks",
        steps=4,
        rank=4,
        lr=1e-2,
        resolution=64,
        checkpoint_every=0,
        gradient_checkpointing=True,
        sample_every=4,
        sample_steps=2,
        out=str(out),
    )
    runner = Runner(device="cpu")

    def cancel_at_2(e):
        if isinstance(e, Progress) and e.step == 2:
            runner.cancel()

    assert isinstance(runner.run(request, emit=cancel_at_2), Cancelled)
    import dataclasses

    final = runner.run(dataclasses.replace(request, resume=True))
    assert isinstance(final, Finished), getattr(final, "detail", final)
    assert final.images and final.images[0].shape == (64, 64, 3)
    import safetensors.torch

    weights = safetensors.torch.load_file(str(out))
    assert {v.dtype for v in weights.values()} == {torch.float32}
    assert all(torch.isfinite(v).all() for v in weights.values())
