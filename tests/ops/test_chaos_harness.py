"""``make chaos`` (chaos/run.py): on a machine that cannot make network namespaces it fails
and says why; it never skips."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import netns

CHAOS = Path(__file__).resolve().parents[2] / "chaos" / "run.py"


def chaos_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_run", CHAOS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "chaos_run", module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_it_says_that_namespaces_need_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)

    assert (
        netns.namespaces_unavailable()
        == "making network namespaces needs root (this process runs as uid 1000)"
    )


def test_it_fails_with_the_reason_when_namespaces_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    chaos = chaos_module(monkeypatch)
    monkeypatch.setattr(
        chaos, "namespaces_unavailable", lambda: "`ip netns add` failed: Operation not permitted"
    )
    monkeypatch.setattr(sys, "argv", ["chaos/run.py"])

    assert chaos.main() == 2
    assert "cannot run the hosts: `ip netns add` failed: Operation not permitted" in capsys.readouterr().err
