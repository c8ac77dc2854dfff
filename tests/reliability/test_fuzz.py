"""Quick fuzz runs (hypothesis) of the parsers that read user files: the image loader, the
AUTOMATIC1111 parameters parser, the project file loader and the model catalog parser. The
long run (>= 10,000 examples each) is `python benchmarks/fuzz.py`."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from . import fuzz_targets as ft

QUICK = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@QUICK
@given(ft.image_inputs)
def test_fuzz_image_loader(data):
    ft.image_loader(data)


@QUICK
@given(ft.parameters_texts())
def test_fuzz_parameters_parser(text):
    ft.parameters_parser(text)


@QUICK
@given(ft.project_files())
def test_fuzz_project_loader(data):
    ft.project_loader(data)


@QUICK
@given(ft.catalog_texts())
def test_fuzz_catalog_parser(text):
    ft.catalog_parser(text)
