"""scripts/toolchain.py: pins, cache keys and the go.mod edits its recipes rely on (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import load_toolchain

from core.talos_versions import KUBERNETES_RANGE_BY_TALOS_MINOR

toolchain = load_toolchain()


def test_one_talos_loader_per_supported_minor_at_that_minor() -> None:
    loaders = {
        entry.name: next(iter(entry.modules.values()))
        for entry in toolchain.load_entries("oracles")
        if entry.name.startswith("talos-validate-")
    }
    assert sorted(loaders) == sorted(
        f"talos-validate-v{major}_{minor}" for major, minor in KUBERNETES_RANGE_BY_TALOS_MINOR
    )
    for name, version in loaders.items():
        minor = name.rsplit("_", 1)[1]
        assert version.startswith(f"v1.{minor}."), (name, version)


def test_every_entry_names_what_it_builds() -> None:
    for group in ("oracles", "e2e"):
        for entry in toolchain.load_entries(group):
            assert entry.recipe in {"module", "source", "copy", "files"}, entry.name
            assert entry.binaries, entry.name
            assert entry.modules, entry.name


def test_replaces_are_read_from_blocks_and_single_lines() -> None:
    go_mod = (
        "module example.com/m\n\n"
        "replace github.com/a/b => ../b\n\n"
        "replace (\n"
        "\tk8s.io/api => ./staging/src/k8s.io/api // local\n"
        "\tgithub.com/c/d v1.0.0 => github.com/e/d v1.2.0\n"
        ")\n"
        "require k8s.io/api v0.0.0\n"
    )
    assert toolchain._replaces(go_mod) == [
        ("github.com/a/b", "../b"),
        ("k8s.io/api", "./staging/src/k8s.io/api"),
        ("github.com/c/d v1.0.0", "github.com/e/d v1.2.0"),
    ]
    kept = toolchain._drop_replaces(go_mod, ["github.com/a/b", "k8s.io/api"])
    assert "../b" not in kept and "./staging" not in kept
    assert "github.com/c/d v1.0.0 => github.com/e/d v1.2.0" in kept


def entry(**spec: Any) -> Any:
    return toolchain.Entry("oracles", "tool", {"recipe": "module", **spec})


def test_cache_key_follows_what_is_built_not_what_is_only_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(toolchain, "go_version", lambda: "go1.26.8")
    base = entry(require={"example.com/m": "v1.0.0"}, packages={"tool": "example.com/m/cmd"})
    same = entry(
        require={"example.com/m": "v1.0.0"},
        packages={"tool": "example.com/m/cmd"},
        probe_also=["example.com/dep@v2.0.0"],
    )
    bumped = entry(require={"example.com/m": "v1.0.1"}, packages={"tool": "example.com/m/cmd"})
    key = base.key()
    assert key == same.key()
    assert key != bumped.key()
    assert key.startswith("tool-v1.0.0-")
    monkeypatch.setattr(toolchain, "go_version", lambda: "go1.27.3")
    assert base.key() != key, "another Go builds another binary"


def test_source_changes_change_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolchain, "go_version", lambda: "go1.26.8")
    monkeypatch.setattr(toolchain, "REPO", tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.go").write_text("package main\n")
    source = toolchain.Entry(
        "oracles", "tool", {"recipe": "source", "source": "src", "require": {"m": "v1.0.0"}}
    )
    before = source.key()
    (tmp_path / "src" / "main.go").write_text("package main // changed\n")
    assert source.key() != before


def test_locate_finds_only_completed_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(toolchain.CACHE_ENV, str(tmp_path))
    (helm,) = [e for e in toolchain.load_entries("oracles") if e.name == "helm"]
    assert "helm" not in toolchain.locate("oracles")
    binary = helm.directory() / "bin" / "helm"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    assert "helm" not in toolchain.locate("oracles"), "a build without its stamp is unfinished"
    (helm.directory() / toolchain.STAMP).write_text("{}")
    assert toolchain.locate("oracles")["helm"] == binary
    assert "make oracles-toolchain" in toolchain.build_hint("oracles")
