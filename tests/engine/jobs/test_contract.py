"""The job contract, one test class per job handler (the way diffusers' PipelineTesterMixin
runs the same checks on every pipeline):

1. events come in order (Started, then Progress/Preview..., then exactly one terminal
   event), every one with the job id;
2. a cancel at the k-th Progress event stops the job with Cancelled, and the work that must
   not happen after a cancel (the VAE decode for diffusion jobs, the backend call for
   LaMa/OpenCV, the model call for upscaling, ...) is not done after it;
3. a failure (a bad model, a bad input) gives Failed, and the same Runner then runs the next
   job to Finished.

A class sets ``request()``/``bad_request()`` and ``watch()`` (patches the calls that must
not run after a cancel and returns the list they record into: one bool per call, whether the
job was already cancelled). Everything runs on the CPU with the tiny models of
tests/conftest.py and tiny files in temp folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.core.cancel import CancelToken
from studio.engine.jobs import (
    Cancelled,
    DownloadRequest,
    Failed,
    Finished,
    GenerateRequest,
    ImportModelRequest,
    InpaintRequest,
    PreprocessRequest,
    Preview,
    Progress,
    RemoveModelRequest,
    Runner,
    ScanModelsRequest,
    Started,
    UpscaleRequest,
)
from studio.engine.jobs.events import TERMINAL


class JobContract:
    """The checks every job handler must pass. Subclasses fill in the hooks."""

    cancel_at = 1  # cancel when the k-th Progress event arrives (1-based)
    bad_exit_code = 3  # the Failed exit code of bad_request()

    def request(self):
        raise NotImplementedError

    def bad_request(self):
        raise NotImplementedError

    def watch(self, monkeypatch, token: CancelToken) -> list[bool]:
        """Patch the calls that must not run after a cancel; return their record."""
        return []

    def after_cancel(self, final: Cancelled) -> None:
        """Extra checks after the cancel (files left, ...)."""

    # -- the contract ----------------------------------------------------------------------
    def _run(self, runner: Runner, request, token: CancelToken | None = None, on_event=None):
        events = []

        def emit(e):
            events.append(e)
            if on_event is not None:
                on_event(e)

        final = runner.run(request, emit=emit, job_id=4242, token=token)
        return final, events

    def test_events_in_order_with_the_job_id(self, runner):
        final, events = self._run(runner, self.request())
        assert isinstance(final, Finished), getattr(final, "message", final)
        assert isinstance(events[0], Started) and events[-1] is final
        assert all(isinstance(e, Progress | Preview) for e in events[1:-1]), events
        assert sum(isinstance(e, TERMINAL) for e in events) == 1
        assert {e.job_id for e in events} == {4242}
        assert any(isinstance(e, Progress) for e in events)

    def test_cancel_at_step_k_stops_with_no_work_after_it(self, runner, monkeypatch):
        token = CancelToken()
        calls = self.watch(monkeypatch, token)
        seen = {"progress": 0}

        def on_event(e):
            if isinstance(e, Progress):
                seen["progress"] += 1
                if seen["progress"] == self.cancel_at:
                    assert runner.cancel(4242)

        final, events = self._run(runner, self.request(), token, on_event)
        assert isinstance(final, Cancelled), getattr(final, "message", final)
        assert final.job_id == 4242 and events[-1] is final
        assert sum(isinstance(e, TERMINAL) for e in events) == 1
        assert token.cancelled
        assert True not in calls, "work was done after the cancel"
        progress_after = [e for e in events if isinstance(e, Progress)][self.cancel_at :]
        assert len(progress_after) <= 1, progress_after  # at most the step in flight
        self.after_cancel(final)

    def test_failure_leaves_the_runner_usable(self, runner):
        final, events = self._run(runner, self.bad_request())
        assert isinstance(final, Failed), final
        assert final.exit_code == self.bad_exit_code and final.message
        assert "\n" not in final.message and "Traceback" not in final.message
        assert isinstance(events[0], Started) and events[-1] is final
        again, _ = self._run(runner, self.request())
        assert isinstance(again, Finished), getattr(again, "message", again)


@pytest.fixture
def runner():
    return Runner(device="cpu")


def _spy(monkeypatch, owner, name: str, token: CancelToken, calls: list[bool]) -> None:
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(token.cancelled)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def _watch_vae_decode(monkeypatch, token: CancelToken) -> list[bool]:
    from diffusers import AutoencoderKL

    calls: list[bool] = []
    _spy(monkeypatch, AutoencoderKL, "decode", token, calls)
    return calls


def _image(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _two_region_mask(h: int = 64, w: int = 96) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[8:20, 8:20] = 255
    mask[40:56, 70:90] = 255
    return mask


# -- diffusion ------------------------------------------------------------------------------------
class TestGenerate(JobContract):
    cancel_at = 2  # Progress(0) is "starting"; cancel during the denoising

    @pytest.fixture(autouse=True)
    def _models(self, tiny_models, tmp_path):
        self.models = tiny_models
        self.tmp = tmp_path

    def request(self):
        return GenerateRequest(
            model=str(self.models.sd), prompt="a cat", steps=4, width=64, height=64, preview="off"
        )

    def bad_request(self):
        return GenerateRequest(model=str(self.tmp / "missing.safetensors"), prompt="x")

    def watch(self, monkeypatch, token):
        return _watch_vae_decode(monkeypatch, token)

    def test_decode_runs_when_not_cancelled(self, runner, monkeypatch):
        token = CancelToken()
        calls = self.watch(monkeypatch, token)
        final, _ = self._run(runner, self.request(), token)
        assert isinstance(final, Finished) and calls == [False]  # the spy sees decodes


class TestInpaintDiffusion(JobContract):
    cancel_at = 2

    @pytest.fixture(autouse=True)
    def _models(self, tiny_models, tmp_path):
        self.models = tiny_models
        self.tmp = tmp_path

    def request(self):
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        return InpaintRequest(
            image=_image(),
            mask=mask,
            method="diffusion",
            model=str(self.models.sd_inpaint),
            prompt="x",
            steps=4,
            padding=8,
            preview="off",
        )

    def bad_request(self):
        mask = np.full((64, 64), 255, np.uint8)
        return InpaintRequest(
            image=_image(), mask=mask, method="diffusion", model=str(self.tmp / "gone"), prompt="x"
        )

    def watch(self, monkeypatch, token):
        return _watch_vae_decode(monkeypatch, token)


@pytest.fixture(scope="module")
def lama_file(tmp_path_factory) -> Path:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    net = LaMa(in_nc=4, out_nc=3).eval()
    path = tmp_path_factory.mktemp("lama") / "lama-random.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


class TestInpaintLama(JobContract):
    cancel_at = 2  # 1: "Loading LaMa", 2: region 0 of 2 -> the first region is not inpainted

    @pytest.fixture(autouse=True)
    def _models(self, lama_file, tmp_path):
        self.lama = lama_file
        self.tmp = tmp_path

    def request(self):
        return InpaintRequest(
            image=_image(64, 96), mask=_two_region_mask(), method="lama", model=str(self.lama)
        )

    def bad_request(self):
        return InpaintRequest(
            image=_image(64, 96),
            mask=_two_region_mask(),
            method="lama",
            model=str(self.tmp / "nope.pt"),
        )

    def watch(self, monkeypatch, token):
        from studio.engine.restore import lama

        calls: list[bool] = []
        _spy(monkeypatch, lama, "lama_inpaint", token, calls)
        return calls


class TestInpaintOpenCV(JobContract):
    cancel_at = 1  # region 0 of 2: nothing is inpainted
    bad_exit_code = 2

    def request(self):
        return InpaintRequest(image=_image(64, 96), mask=_two_region_mask(), method="telea")

    def bad_request(self):
        return InpaintRequest(image=_image(64, 96), mask=np.zeros((3, 3), np.uint8))

    def watch(self, monkeypatch, token):
        from studio.engine.restore import inpaint

        calls: list[bool] = []
        _spy(monkeypatch, inpaint, "classical_inpaint", token, calls)
        return calls


# -- restoration and vision -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def esrgan_file(tmp_path_factory) -> Path:
    from studio.engine.fixtures import write_random_esrgan

    return write_random_esrgan(tmp_path_factory.mktemp("esrgan") / "tiny-x4.safetensors")


class TestUpscale(JobContract):
    cancel_at = 2  # after the first of four tiles

    @pytest.fixture(autouse=True)
    def _models(self, esrgan_file, tmp_path):
        self.model = esrgan_file
        self.tmp = tmp_path

    def request(self):
        return UpscaleRequest(image=_image(64, 64), model=str(self.model), scale=2, tile=32)

    def bad_request(self):
        return UpscaleRequest(image=_image(), model=str(self.tmp / "missing.safetensors"))

    def watch(self, monkeypatch, token):
        import spandrel

        from studio.core import resample

        calls: list[bool] = []
        _spy(monkeypatch, spandrel.ImageModelDescriptor, "__call__", token, calls)
        _spy(monkeypatch, resample, "resize", token, calls)  # the x4 -> x2 resize
        return calls


class TestPreprocess(JobContract):
    bad_exit_code = 3

    def request(self):
        return PreprocessRequest("canny", _image())

    def bad_request(self):
        return PreprocessRequest("pose", _image(), params=(("model", "no-such-pose-model"),))

    def watch(self, monkeypatch, token):
        from studio.engine.vision import control

        calls: list[bool] = []
        _spy(monkeypatch, control, "canny", token, calls)
        return calls


# -- the model manager ----------------------------------------------------------------------------
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A user catalog entry ``tiny-file`` served from 127.0.0.1 (never the internet)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
                )
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 65536):  # in pieces: progress events come per read
                self.wfile.write(body[i : i + 65536])
                self.wfile.flush()

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.toml").write_text(
        f"""
[[model]]
id = "tiny-file"
name = "Tiny file"
kind = "upscaler"
url = "http://127.0.0.1:{srv.server_address[1]}/tiny-file.pth"
size = {len(PAYLOAD)}
license = "MIT"
"""
    )
    monkeypatch.setenv("STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("STUDIO_OFFLINE", raising=False)
    monkeypatch.setattr("studio.engine.models.download._Meter.add", _unthrottled_add)
    yield home
    srv.shutdown()
    srv.server_close()


def _unthrottled_add(self, n, force=False):
    """The meter without its 0.1 s throttle, so the test sees a Progress per read."""
    self.done += n
    if self.callback is not None:
        self.callback(self.snapshot())


class TestDownload(JobContract):
    cancel_at = 3  # Progress 1: "starting", 2: the first bytes, 3: more bytes
    bad_exit_code = 2  # an unknown catalog id is a usage error

    @pytest.fixture(autouse=True)
    def _home(self, served):
        self.home = served

    def request(self):
        from studio.engine.models import store

        path = store.kind_dir("upscaler") / "tiny-file.pth"
        if path.exists():
            path.unlink()  # each run downloads again
        return DownloadRequest("tiny-file")

    def bad_request(self):
        return DownloadRequest("no-such-model")

    def after_cancel(self, final):
        folder = self.home / "models" / "upscale_models"
        assert not (folder / "tiny-file.pth").exists()
        part = folder / "tiny-file.pth.part"
        assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD)  # kept for resume

    def test_bytes_progress_and_resume(self, runner):
        final, events = self._run(runner, self.request())
        assert isinstance(final, Finished)
        assert Path(final.extra["path"]).read_bytes() == PAYLOAD
        steps = [e.step for e in events if isinstance(e, Progress)]
        assert steps == sorted(steps) and steps[-1] == len(PAYLOAD)
        assert {e.total for e in events if isinstance(e, Progress)} == {len(PAYLOAD)}


def _lora_file(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    tensors = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 768),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(3072, 4),
    }
    save_file(tensors, str(path))
    return path


class TestImportModel(JobContract):
    cancel_at = 2  # 1: "identifying", 2: the first chunk copied
    bad_exit_code = 2

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path, monkeypatch):
        monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
        monkeypatch.setattr("studio.engine.models.importer.COPY_CHUNK", 1024)
        self.src = _lora_file(tmp_path / "ink.safetensors")
        self.bad = tmp_path / "notes.safetensors"
        self.bad.write_text("not a model")
        self.home = tmp_path / "home"

    def request(self):
        return ImportModelRequest(str(self.src))

    def bad_request(self):
        return ImportModelRequest(str(self.bad))

    def after_cancel(self, final):
        lora_dir = self.home / "models" / "loras"
        assert not lora_dir.exists() or not any(lora_dir.iterdir())  # no partial copy left

    def test_imported_lora_is_listed_at_once(self, runner):
        from studio.engine.models import list_models

        final, _ = self._run(runner, self.request())
        assert isinstance(final, Finished) and final.extra["imported"].kind == "lora"
        assert [c.path.name for c in list_models("lora")] == ["ink.safetensors"]


class TestScanModels(JobContract):
    cancel_at = 3
    bad_exit_code = 2  # a malformed user catalog

    @pytest.fixture(autouse=True)
    def _home(self, tmp_path, monkeypatch):
        self.home = tmp_path / "home"
        self.home.mkdir()
        monkeypatch.setenv("STUDIO_HOME", str(self.home))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    def request(self):
        (self.home / "catalog.toml").unlink(missing_ok=True)
        up = self.home / "models" / "upscale_models" / "RealESRGAN_x4plus.pth"
        up.parent.mkdir(parents=True, exist_ok=True)
        up.write_bytes(b"x")
        return ScanModelsRequest()

    def bad_request(self):
        (self.home / "catalog.toml").write_text("[[model]]\nid = 3\n")
        return ScanModelsRequest()

    def test_scan_reports_installed_and_found(self, runner):
        final, _ = self._run(runner, self.request())
        assert isinstance(final, Finished)
        assert final.extra["installed"]["realesrgan-x4plus"].endswith("RealESRGAN_x4plus.pth")
        assert final.extra["found"] == []  # the catalog model's file is not listed twice


class TestRemoveModel(JobContract):
    bad_exit_code = 2

    @pytest.fixture(autouse=True)
    def _home(self, tmp_path, monkeypatch):
        self.home = tmp_path / "home"
        monkeypatch.setenv("STUDIO_HOME", str(self.home))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    def request(self):
        up = self.home / "models" / "upscale_models" / "RealESRGAN_x4plus.pth"
        up.parent.mkdir(parents=True, exist_ok=True)
        up.write_bytes(b"12345")
        self.file = up
        return RemoveModelRequest("realesrgan-x4plus")

    def bad_request(self):
        return RemoveModelRequest("no-such-thing")

    def after_cancel(self, final):
        assert self.file.exists()  # cancelled before anything was deleted

    def test_remove_frees_the_bytes(self, runner):
        final, _ = self._run(runner, self.request())
        assert isinstance(final, Finished) and final.extra["freed"] == 5
        assert not self.file.exists()


def _training_contract():
    """TrainLoraRequest's contract class lives beside training's fixtures."""
    import importlib.util

    from studio.engine.jobs import TrainLoraRequest

    path = Path(__file__).parents[1] / "training" / "test_contract_train.py"
    spec = importlib.util.spec_from_file_location("studio_tests_train_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {TrainLoraRequest: module.TestTrainLora}


def test_every_handler_has_a_contract_class():
    from studio.engine.jobs import (
        HANDLERS,
        DetailFacesRequest,
        RestoreFacesRequest,
        SegmentRequest,
    )
    from tests.engine.jobs import test_contract_vision as vision

    tested = {
        **_training_contract(),
        GenerateRequest: TestGenerate,
        InpaintRequest: TestInpaintOpenCV,
        UpscaleRequest: TestUpscale,
        PreprocessRequest: TestPreprocess,
        DownloadRequest: TestDownload,
        ImportModelRequest: TestImportModel,
        ScanModelsRequest: TestScanModels,
        RemoveModelRequest: TestRemoveModel,
        SegmentRequest: vision.TestSegment,
        RestoreFacesRequest: vision.TestRestoreFaces,
        DetailFacesRequest: vision.TestDetailFaces,
    }
    missing = [t.__name__ for t in HANDLERS if t not in tested]
    assert missing == [], f"job handlers without a contract test: {missing}"
    # The training module loads this file under another name: compare the base by name.
    assert all(any(b.__name__ == "JobContract" for b in c.__mro__) for c in tested.values())
