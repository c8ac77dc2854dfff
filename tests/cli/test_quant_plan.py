"""``--quant`` / ``--offload`` (studio/cli/args.py) on ``studio generate`` and ``studio plan``:
parsing, the request fields, the one-line errors, and the plan shown for a tiny FLUX.1 folder,
for catalog models not installed at 8/12/24 GiB, on the CPU, as JSON and as the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.cli import args as shared
from studio.cli import build_parser, main
from studio.engine.diffusion.shared.memory import OFFLOADS, WEIGHT_FORMATS


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    from studio.engine.fixtures.tiny_flow_models import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("plan") / "tiny-flux1")


def _exit_code(argv: list[str]) -> int:
    """main()'s return value, or the status argparse exits with on bad arguments."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def _generate_args(*extra: str, model: str = "m") -> list[str]:
    return ["generate", "--model", model, "--prompt", "p", "--out", "o.png", *extra]


def test_choices_are_the_planners():
    assert shared.QUANTS == ("auto", *WEIGHT_FORMATS)
    assert shared.OFFLOAD_MODES == ("auto", *OFFLOADS)
    assert set(shared.QUANTS) == {"auto", "bf16", "fp8", "q8_0", "nf4", "q4_k"}


def test_parsing_maps_auto_to_none_and_is_case_insensitive():
    args = build_parser().parse_args(_generate_args())
    assert (args.quant, args.offload) == ("auto", "auto")
    assert shared.resolve_memory(args) == {"quant": None, "offload": None}
    args = build_parser().parse_args(_generate_args("--quant", "Q4_K", "--offload", "GROUP"))
    assert shared.resolve_memory(args, "flux1") == {"quant": "q4_k", "offload": "group"}


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (_generate_args("--quant", "q5_k"), "argument --quant: invalid choice: 'q5_k'"),
        (_generate_args("--offload", "disk"), "argument --offload: invalid choice: 'disk'"),
        (["plan", "flux1-schnell", "--quant", "int8"], "argument --quant: invalid choice"),
        (["plan", "flux1-schnell", "--vram", "lots"], "--vram 'lots': give the free memory"),
        (["plan", "flux1-schnell", "--vram", "-4"], "must be between 0 and 4096"),
        (["plan"], "give a MODEL"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(argv, wanted, capsys):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("studio: error:"), err
    assert wanted in err


def test_generate_request_carries_quant_and_offload(tiny_flux, tmp_path):
    from studio.cli.generate_cmd import build_request

    out = str(tmp_path / "o.png")
    argv = ["generate", "--model", str(tiny_flux), "--prompt", "p", "--out", out]
    request, _ = build_request(build_parser().parse_args([*argv, "--quant", "fp8", "--offload", "model"]))  # fmt: skip
    assert (request.quant, request.offload) == ("fp8", "model")
    request, _ = build_request(build_parser().parse_args(argv))
    assert (request.quant, request.offload) == (None, None)


def test_generate_refuses_quant_for_an_sd_model(tiny_models, tmp_path, capsys):
    argv = ["generate", "--model", str(tiny_models.sd), "--prompt", "p", "--out", str(tmp_path / "o.png"), "--quant", "fp8"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--quant fp8: SD 1.x models run in fp16" in err
    assert not (tmp_path / "o.png").exists()


def _plan(capsys, *argv: str) -> list[str]:
    assert main(["plan", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_plan_of_a_tiny_folder_uses_its_real_sizes(tiny_flux, capsys):
    lines = _plan(capsys, str(tiny_flux), "--vram", "8", "--size", "64x64")
    assert lines[0].startswith("FLUX.1: GPU, bf16, ") and "(fits)" in lines[0]
    assert lines[1] == "  planned for: a card with 8 GiB free (--vram)"
    assert lines[2] == "  runs: pipe.to('cuda')"
    # Forced offload on the same folder: the override is honoured and said.
    lines = _plan(capsys, str(tiny_flux), "--vram", "8", "--offload", "sequential")
    assert lines[0].startswith("FLUX.1: sequential offload, bf16")
    assert "  runs: pipe.enable_sequential_cpu_offload()" in lines


def test_plan_differs_by_card_size(capsys):
    first = {v: _plan(capsys, "flux1-schnell", "--vram", v)[0] for v in ("8", "12", "24")}
    assert first["8"].startswith("FLUX.1 schnell: group offload, bf16, ")
    assert "of 7.2 GiB (fits" in first["8"]
    assert first["24"].startswith("FLUX.1 schnell: model offload, fp8 / text bf16, ")
    assert "of 23.2 GiB (fits" in first["24"]
    assert len(set(first.values())) == 3
    # Z-Image Turbo: 8 GiB group offload, 12 GiB model offload with fp8, 24 GiB all on the GPU
    z = [_plan(capsys, "z-image-turbo", "--vram", v)[0] for v in ("8", "12", "24")]
    assert [line.split(":")[1].split(",")[0].strip() for line in z] == [
        "group offload",
        "model offload",
        "GPU",
    ]


def test_plan_honours_quant_and_says_when_it_does_not_fit(capsys):
    lines = _plan(capsys, "flux1-dev", "--vram", "8", "--quant", "q4_k")
    assert ", q4_k" in lines[0] and "needs a Q4_K GGUF file (city96/FLUX.1-dev-gguf)" in lines[0]
    assert any("GGUFQuantizationConfig" in line for line in lines)
    lines = _plan(capsys, "flux1-dev", "--vram", "8", "--offload", "none", "--quant", "bf16")
    assert "does NOT fit" in lines[0] and "over the VRAM budget" in lines[0]


def test_plan_refuses_quant_for_sd_and_unknown_models(capsys):
    assert main(["plan", "sd15", "--vram", "8", "--quant", "nf4"]) == 2
    assert "SD 1.x models run in fp16" in capsys.readouterr().err
    assert main(["plan", "no-such-model-here", "--vram", "8"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-model-here" in err


def test_plan_on_the_cpu_says_so(capsys):
    lines = _plan(capsys, "flux1-schnell", "--device", "cpu")
    assert lines[0] == "FLUX.1 schnell: CPU: no memory plan, runs in float32 on the CPU"
    assert "--vram GIB" in lines[1]


def test_plan_json_and_table(capsys):
    out = json.loads("\n".join(_plan(capsys, "flux2-klein-4b", "--vram", "12", "--json")))
    assert out["family"] == "flux2" and out["label"] == "FLUX.2 klein 4B"
    assert out["plan"]["offload"] == "model" and out["plan"]["fits"] is True
    assert out["plan"]["calls"][-1] == "pipe.enable_model_cpu_offload()"
    assert out["line"].startswith("FLUX.2 klein 4B: model offload, bf16")
    table = _plan(capsys, "--table", "--vram", "8,24")
    assert table[0] == "| model | 8 GiB | 24 GiB |"
    assert any(line.startswith("| Qwen-Image |") for line in table)


def test_info_on_a_model_points_to_plan(tiny_flux, capsys):
    for ref in ("flux1-schnell", str(tiny_flux)):
        assert main(["info", ref]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"`studio plan {ref}`" in err
