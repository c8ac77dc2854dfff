"""benchmarks/gpu_check.py --cpu-smoke: the GPU check's own code path (random models handed to
the loader, Studio's job path, plans, a LoRA, each preview mode, a cancel, the report) on the
tiny fixtures on the CPU, run as a user runs it, and its JSON / Markdown checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_smoke_runs_every_kind_of_job_and_writes_the_report(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "STUDIO_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-smoke",
         "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "cpu-smoke" and report["all_ok"]
    assert "torch" in report["environment"] and report["seconds"] > 0
    runs = report["runs"]
    for model in ("flux1-schnell", "sd15"):
        mine = [x for x in runs if x["model"] == model]
        kinds = {x["kind"] for x in mine}
        assert {"plan", "lora", "preview", "cancel"} <= kinds, (model, kinds)
        assert {x["preview"] for x in mine if x["kind"] == "preview"} == {"latent", "taesd", "full"}
        for x in mine:
            assert x["ok"], x
            if x["kind"] != "cancel":
                assert x["status"] == "Finished" and x["steps"] >= 2 and x["s_per_image"] > 0
                assert x["steps_per_s"] > 0 and len(x["image_sha1"]) == 16
        assert all(x["lora_changes_pixels"] for x in mine if x["kind"] == "lora")
        (cancel,) = [x for x in mine if x["kind"] == "cancel"]
        assert cancel["status"] == "Cancelled" and cancel["steps"] <= 2
    flux_plans = [x for x in runs if x["model"] == "flux1-schnell" and x["kind"] == "plan"]
    assert {x["weights"] for x in flux_plans} >= {"bf16", "fp8"}  # fp8 ran, and with a LoRA
    assert any(x["weights"] == "fp8" for x in runs if x["kind"] == "lora")
    # another plan, the same weights: the same seed gave the same pixels
    assert [x["same_seed_same_pixels"] for x in flux_plans if x["offload"] == "model"] == [True]
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (cpu-smoke)") and md.count("| flux1-schnell |") >= 6
