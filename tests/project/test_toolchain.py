"""scripts/toolchain.py: pins, cache keys and the go.mod edits its recipes rely on (offline)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from core.releases.talos import KUBERNETES_RANGE_BY_TALOS_MINOR

from tests.conftest import load_toolchain

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
            assert entry.recipe in {"module", "source", "copy", "files", "tarball"}, entry.name
            assert entry.binaries, entry.name
            assert entry.modules or entry.tarballs, entry.name


def test_engine_pieces_the_proxy_refuses_are_built_from_the_pinned_upstream_tarballs() -> None:
    """The hcloud provider and the language host: every tarball is the one the shared
    README lists (same sha256), and it is there with that digest."""
    listed = dict(
        reversed(line.split())
        for line in (toolchain.upstream_src() / "README.md").read_text().splitlines()
        if line.endswith(".tar.gz") and len(line.split()) == 2
    )
    entries = {entry.name: entry for entry in toolchain.load_entries("e2e")}
    hcloud, language = entries["pulumi-resource-hcloud"], entries["pulumi-language-python"]
    assert (hcloud.version, hcloud.spec["plugin_version"]) == ("1.43.3", "1.43.3")
    assert "Version=1.43.3" in hcloud.spec["ldflags"]
    assert language.spec["require"] == {
        "github.com/pulumi/pulumi/pkg/v3": "v3.274.1",
        "github.com/pulumi/pulumi/sdk/v3": "v3.274.1",
    }, "the language host is built against the CLI's own pkg/sdk"
    sources = [*hcloud.tarballs, *language.tarballs]
    assert {source["file"] for source in sources} == set(listed)
    for source in sources:
        assert source["sha256"] == listed[source["file"]], source["file"]
        assert toolchain.tarball_status(source) == "ok", source["file"]


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


def write_tarball(path: Path, files: dict[str, str]) -> str:
    """A .tar.gz of ``files`` (name -> text); its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tarball_entry(sources: Path, **spec: Any) -> Any:
    app = write_tarball(
        sources / "app.tar.gz",
        {
            "app/cmd/go.mod": "module example.com/app\n\ngo 1.21\n\n"
            "replace example.com/lib => ../../lib\n\nrequire example.com/lib v1.0.0\n",
            "app/cmd/main.go": "package main\n\n//go:generate go run ./gen\n\n"
            'import (\n\t_ "embed"\n\t"fmt"\n\n\t"example.com/lib"\n)\n\n'
            '//go:embed generated.txt\nvar generated string\n\nvar Version = "dev"\n\n'
            "func main() { fmt.Println(lib.Name, Version, generated) }\n",
            "app/cmd/gen/main.go": 'package main\n\nimport "os"\n\n'
            'func main() { _ = os.WriteFile("generated.txt", []byte(os.Getenv("VERSION")), 0o644) }\n',
        },
    )
    lib = write_tarball(
        sources / "lib.tar.gz",
        {
            "lib/go.mod": "module example.com/lib\n\ngo 1.21\n",
            "lib/lib.go": 'package lib\n\nconst Name = "from-the-lib-tarball"\n',
        },
    )
    return toolchain.Entry(
        "e2e",
        "app",
        {
            "recipe": "tarball",
            "release": "1.0.0",
            "tarball": {"file": "app.tar.gz", "sha256": app, "dir": "app/cmd"},
            "replace_with": {
                "example.com/lib": {"file": "lib.tar.gz", "sha256": lib, "dir": "lib"}
            },
            "drop_replaces": ["example.com/lib"],
            "generate": {"dir": ".", "command": ["go", "generate", "."], "env": {"VERSION": "7"}},
            "packages": {"app": "."},
            "ldflags": "-X main.Version=1.0.0",
            **spec,
        },
    )


def test_tarball_recipe_builds_the_upstream_tree_with_its_replaces_and_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "upstream-src"
    sources.mkdir()
    monkeypatch.setenv(toolchain.UPSTREAM_SRC_ENV, str(sources))
    monkeypatch.setenv(toolchain.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("GOPROXY", "off")  # everything comes from the tarballs
    app = tarball_entry(sources)
    work = tmp_path / "work"
    with (tmp_path / "build.log").open("w") as log:
        toolchain.Builder(app, work, log).build()
    result = subprocess.run([work / "bin" / "app"], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["from-the-lib-tarball", "1.0.0", "7"]
    assert "sha256" in (tmp_path / "build.log").read_text()


def test_tarball_recipe_refuses_a_tarball_whose_sha256_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "upstream-src"
    sources.mkdir()
    monkeypatch.setenv(toolchain.UPSTREAM_SRC_ENV, str(sources))
    app = tarball_entry(sources)
    write_tarball(sources / "lib.tar.gz", {"lib/go.mod": "module example.com/other\n"})
    (lib,) = app.spec["replace_with"].values()
    assert toolchain.tarball_status(lib).startswith("SHA256 MISMATCH")
    assert toolchain.tarball_status(app.spec["tarball"]) == "ok"
    with (tmp_path / "build.log").open("w") as log, pytest.raises(toolchain.BuildError) as error:
        toolchain.Builder(app, tmp_path / "work", log).build()
    assert "lib.tar.gz" in str(error.value) and "not the pinned" in str(error.value)
    (sources / "app.tar.gz").unlink()
    assert toolchain.tarball_status(app.spec["tarball"]).startswith("MISSING")
