"""The recorded real payloads under tests/fixtures/real: enough per platform, and each
names the public source it was recorded from (tests/fixtures/real/SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REAL = Path(__file__).parent / "fixtures" / "real"


@pytest.mark.parametrize("platform", ["telegram", "vk", "twitter"])
def test_every_fixture_names_its_source(platform):
    files = sorted((REAL / platform).glob("*.json"))
    assert len(files) >= 15
    for path in files:
        fixture = json.loads(path.read_text())
        assert fixture["source"] and fixture["payload"], path.name
