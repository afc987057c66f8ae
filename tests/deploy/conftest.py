"""Fixtures for the deploy tests: each stage packaged once per session, offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from deploy.package import Package, package

Packager = Callable[[str], Package]


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packager:
    """``packaged(stage)`` -> the stage's ``chalice package`` output, built on first use."""
    cache: dict[str, Package] = {}

    def get(stage: str) -> Package:
        if stage not in cache:
            out = tmp_path_factory.mktemp(f"package-{stage}") / "out"
            cache[stage] = package(stage, out, quiet=True)
        return cache[stage]

    return get


def load_template(pkg: Package) -> dict[str, Any]:
    with open(pkg.template_path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
