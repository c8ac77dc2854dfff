"""The Runner's model cache: one heavy model resident at a time across job kinds when memory
is short (an LRU over pipelines, upscalers, LaMa and pose detectors), and how "short" is
measured. CUDA was NOT run here: the CUDA memory queries are replaced by fakes."""

from __future__ import annotations

import os

import pytest
import torch

from studio.engine.jobs import runner as R
from studio.engine.jobs.runner import Runner


@pytest.mark.parametrize("short", [True, False])
def test_heavy_models_evict_each_other_only_when_memory_is_short(monkeypatch, short):
    monkeypatch.setattr(R, "memory_short", lambda fraction=R.SHORT_FRACTION: short)
    freed = []
    monkeypatch.setattr(R, "free_memory", lambda: freed.append(1))
    runner = Runner()
    runner.cache("pipe:sd15|cpu", lambda: "pipeline")
    runner.cache("taesd:x", lambda: "tiny decoder")  # light: never evicted by the rule
    runner.cache("upscaler:esrgan", lambda: "upscaler")
    if short:
        assert runner.cached_keys == ["taesd:x", "upscaler:esrgan"] and freed
    else:
        assert runner.cached_keys == ["pipe:sd15|cpu", "taesd:x", "upscaler:esrgan"]
        assert not freed
    runner.cache("lama:big", lambda: "lama")
    runner.cache("pose:openpose", lambda: "pose")
    heavy = [k for k in runner.cached_keys if k.split(":")[0] in R.HEAVY_PREFIXES]
    assert heavy == (["pose:openpose"] if short else
                     ["pipe:sd15|cpu", "upscaler:esrgan", "lama:big", "pose:openpose"])  # fmt: skip


def test_a_hit_is_most_recently_used_and_keep_per_prefix_still_holds(monkeypatch):
    monkeypatch.setattr(R, "memory_short", lambda fraction=R.SHORT_FRACTION: False)
    runner = Runner()
    runner.cache("pipe:a", lambda: 1)
    runner.cache("upscaler:b", lambda: 2)
    assert runner.cache("pipe:a", lambda: pytest.fail("rebuilt")) == 1
    assert runner.cached_keys == ["upscaler:b", "pipe:a"]
    runner.cache("pipe:c", lambda: 3)  # keep=1 per prefix, as before
    assert runner.cached_keys == ["upscaler:b", "pipe:c"]
    runner.cache("taesd:1", lambda: 4, keep=2)
    runner.cache("taesd:2", lambda: 5, keep=2)
    assert [k for k in runner.cached_keys if k.startswith("taesd:")] == ["taesd:1", "taesd:2"]


def test_memory_short_counts_the_allocators_cache_as_free(monkeypatch):
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * gib, 12 * gib))
    reserved = {"value": 8 * gib}
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved["value"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 6 * gib)
    # 2 GiB free at the driver + 2 GiB cached but unused = 4 of 12: not short at 25 %
    assert not R.memory_short(0.25)
    assert R.memory_short(0.5)
    reserved["value"] = 6 * gib  # nothing cached: 2 of 12 free
    assert R.memory_short(0.25)


def test_memory_short_on_the_cpu_reads_ram(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pages = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": 100, "SC_PHYS_PAGES": 1000}
    monkeypatch.setattr(os, "sysconf", pages.get)
    assert R.memory_short(0.25)  # 10 % free
    pages["SC_AVPHYS_PAGES"] = 600
    assert not R.memory_short(0.25)
