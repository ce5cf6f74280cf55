"""Build the Go tools the oracle and end-to-end tests run, from the Go module proxy (and, for
what the proxy refuses, from the upstream source tarballs in ``../shared/upstream-src``).

    python3 scripts/toolchain.py probe  oracles|e2e     # what the proxy serves, as a table
    python3 scripts/toolchain.py build  oracles|e2e [NAME...]
    python3 scripts/toolchain.py locate oracles|e2e [--json]

Versions live in ``scripts/toolchain.toml`` (one file). Each entry is built once into
``~/.cache/hcloud-talos-autoscaler/<group>/<name>-<version>-<hash>/bin`` (the hash covers
the entry, the Go source it builds and the Go version), so a changed pin builds anew and an
unchanged one is skipped. Nothing is written into the repository. Standard library only:
CI runs it before the project's virtualenv matters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "scripts" / "toolchain.toml"
GO = Path("/usr/local/go/bin/go")
CACHE_ENV = "HCLOUD_TALOS_AUTOSCALER_CACHE"
UPSTREAM_SRC_ENV = "UPSTREAM_SRC"
STAMP = "built.json"


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "hcloud-talos-autoscaler"


def upstream_src() -> Path:
    """Upstream source tarballs (``tarball`` recipes): beside the clone, as the tests'
    reference material is, or where ``UPSTREAM_SRC`` says."""
    candidates = [REPO.parent / "shared" / "upstream-src", Path("/work/shared/upstream-src")]
    if UPSTREAM_SRC_ENV in os.environ:
        candidates.insert(0, Path(os.environ[UPSTREAM_SRC_ENV]))
    return next((path for path in candidates if path.is_dir()), candidates[0])


def go_binary() -> str:
    found = shutil.which("go")
    return found or str(GO)


def go_env() -> dict[str, str]:
    """The environment of every go command: the proxy without a `direct` fallback.

    Nothing but the module proxy is reachable, and `direct` turns the proxy's refusal
    into a confusing git error; `-mod=mod` lets builds complete go.sum as they go.
    """
    env = dict(os.environ)
    proxy = env.get("GOPROXY") or "https://proxy.golang.org"
    parts = [part for part in re.split(r"[,|]", proxy) if part and part != "direct"]
    env["GOPROXY"] = ",".join(parts) or "https://proxy.golang.org"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["PATH"] = f"{Path(go_binary()).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Entry:
    group: str
    name: str
    spec: dict[str, Any]

    @property
    def recipe(self) -> str:
        return str(self.spec["recipe"])

    @property
    def modules(self) -> dict[str, str]:
        """Every module@version the entry needs from the proxy."""
        found = dict(self.spec.get("require", {}))
        if "module" in self.spec:
            found[self.spec["module"]] = self.spec["version"]
        return found

    @property
    def tarballs(self) -> list[dict[str, str]]:
        """The upstream source tarballs a ``tarball`` entry unpacks (its tree, then replaces)."""
        if self.recipe != "tarball":
            return []
        return [self.spec["tarball"], *self.spec.get("replace_with", {}).values()]

    @property
    def probed(self) -> list[tuple[str, str]]:
        """What to ask the proxy about: the entry's modules, then ``probe_also`` (module@version
        strings: named dependencies, or the version we would rather have built)."""
        also = [tuple(item.split("@", 1)) for item in self.spec.get("probe_also", [])]
        return [*self.modules.items(), *((module, version) for module, version in also)]

    @property
    def version(self) -> str:
        if "release" in self.spec:
            return str(self.spec["release"])
        return next(iter(self.modules.values()))

    @property
    def binaries(self) -> list[str]:
        return list(self.spec.get("packages", {})) + list(self.spec.get("files", {}))

    def key(self) -> str:
        built_from = {key: value for key, value in self.spec.items() if key != "probe_also"}
        digest = hashlib.sha256(json.dumps(built_from, sort_keys=True).encode())
        digest.update(go_version().encode())
        if self.recipe == "source":
            source = REPO / self.spec["source"]
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    digest.update(path.relative_to(source).as_posix().encode())
                    digest.update(path.read_bytes())
        return f"{self.name}-{self.version}-{digest.hexdigest()[:10]}"

    def directory(self) -> Path:
        return cache_root() / self.group / self.key()

    def is_built(self) -> bool:
        return (self.directory() / STAMP).is_file()


_GO_VERSION: list[str] = []


def go_version() -> str:
    if not _GO_VERSION:
        result = subprocess.run(
            [go_binary(), "env", "GOVERSION"], capture_output=True, text=True, check=True
        )
        _GO_VERSION.append(result.stdout.strip())
    return _GO_VERSION[0]


def load_entries(group: str) -> list[Entry]:
    pins = tomllib.loads(PINS.read_text("utf-8"))
    if group not in pins:
        raise SystemExit(f"unknown group {group!r}; groups in {PINS.name}: {', '.join(pins)}")
    return [Entry(group, name, spec) for name, spec in pins[group].items()]


def locate(group: str) -> dict[str, Path]:
    """Binary name -> path of every binary of the group that is built."""
    found: dict[str, Path] = {}
    for entry in load_entries(group):
        if entry.is_built():
            for binary in entry.binaries:
                found[binary] = entry.directory() / "bin" / binary
    return found


def plugin_versions(group: str) -> dict[str, str]:
    """Binary name -> the plugin version the tests install it as (providers only)."""
    return {
        binary: str(entry.spec["plugin_version"])
        for entry in load_entries(group)
        if "plugin_version" in entry.spec
        for binary in entry.binaries
    }


def build_hint(group: str) -> str:
    return f"build them with `make {group}-toolchain` (python3 scripts/toolchain.py build {group})"


# ---- probe ---------------------------------------------------------------------------------


def tarball_status(source: dict[str, str]) -> str:
    """Whether an upstream tarball is there with its pinned sha256."""
    tarball = upstream_src() / source["file"]
    if not tarball.is_file():
        return f"MISSING: {tarball}"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return "ok" if digest == source["sha256"] else f"SHA256 MISMATCH: {digest}"


def probe(group: str) -> int:
    """Ask the proxy for every module@version of the group and check the upstream tarballs;
    print what resolves."""
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for entry in load_entries(group):
            for module, version in entry.probed:
                result = subprocess.run(
                    [go_binary(), "mod", "download", "-json", f"{module}@{version}"],
                    cwd=scratch,
                    env=go_env(),
                    capture_output=True,
                    text=True,
                )
                status = "ok"
                try:
                    info = json.loads(result.stdout or "{}")
                except json.JSONDecodeError:
                    info = {}
                error = info.get("Error") or (result.stderr.strip() if result.returncode else "")
                if error:
                    status = "REFUSED: " + " ".join(error.split())
                rows.append((entry.name, module, version, status))
            for source in entry.tarballs:
                rows.append((entry.name, source["file"], "sha256", tarball_status(source)))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"{'entry':<{width[0]}}  {'module':<{width[1]}}  {'version':<{width[2]}}  result")
    for row in rows:
        print(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]:<{width[2]}}  {row[3]}")
    return 0


# ---- build ---------------------------------------------------------------------------------


class BuildError(RuntimeError):
    pass


class Builder:
    def __init__(self, entry: Entry, work: Path, log: Any) -> None:
        self.entry = entry
        self.work = work
        self.log = log
        self.bin = work / "bin"
        self.bin.mkdir(parents=True)

    def run(self, command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        self.log.write(f"$ (cd {cwd} && {' '.join(command)})\n")
        self.log.flush()
        result = subprocess.run(
            command,
            cwd=cwd,
            env={**go_env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log.write(result.stdout)
        self.log.flush()
        if result.returncode != 0:
            last = [line for line in result.stdout.splitlines() if line.strip()][-8:]
            raise BuildError(f"`{' '.join(command)}` failed:\n  " + "\n  ".join(last))
        return result.stdout

    def download(self, module: str, version: str) -> dict[str, Any]:
        output = self.run(
            [go_binary(), "mod", "download", "-json", f"{module}@{version}"], cwd=self.work
        )
        info: dict[str, Any] = json.loads(output[output.index("{") :])
        if info.get("Error"):
            raise BuildError(f"the proxy refused {module}@{version}: {info['Error']}")
        return info

    def main_module(self, directory: Path) -> None:
        spec = self.entry.spec
        lines = ["module toolchain.local/build", "", f"go {go_version().removeprefix('go')}", ""]
        if "inherit_replaces" in spec:
            upstream = self.download(
                spec["inherit_replaces"], spec["require"][spec["inherit_replaces"]]
            )
            for old, new in _replaces(Path(upstream["GoMod"]).read_text()):
                if not new.startswith((".", "/")):
                    lines.append(f"replace {old} => {new}")
        if "local_replaces" in spec:
            local = spec["local_replaces"]
            upstream = self.download(local["module"], spec["require"][local["module"]])
            for old, new in _replaces(Path(upstream["GoMod"]).read_text()):
                if new.startswith(local["prefix"]):
                    module = old.split()[0]
                    lines.append(f"replace {module} => {module} {local['version']}")
        (directory / "go.mod").write_text("\n".join(lines) + "\n")
        requires = [f"{module}@{version}" for module, version in spec["require"].items()]
        self.run([go_binary(), "get", *requires], cwd=directory)

    def requires(self) -> list[tuple[str, str]]:
        return list(self.entry.spec.get("require", {}).items())

    def unpack(self, source: dict[str, str]) -> Path:
        """Unpack an upstream tarball (after checking its sha256) into the build directory;
        the path of its ``dir`` (a Go module's root)."""
        tarball = upstream_src() / source["file"]
        if not tarball.is_file():
            raise BuildError(f"{tarball} is missing (the upstream source tarballs, see its README)")
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != source["sha256"]:
            raise BuildError(f"{tarball}: sha256 {digest}, not the pinned {source['sha256']}")
        target = self.work / "src" / tarball.name.removesuffix(".tar.gz")
        if not target.is_dir():
            target.mkdir(parents=True)
            self.log.write(f"$ tar xzf {tarball} -C {target}  # sha256 {digest}\n")
            with tarfile.open(tarball) as archive:
                archive.extractall(target, filter="data")
        return target / source["dir"]

    def pinned_version(self, package: str) -> str:
        """The pinned version of the module that provides ``package`` (longest prefix)."""
        owners = [
            m for m in self.entry.spec["require"] if package == m or package.startswith(m + "/")
        ]
        if not owners:
            raise BuildError(f"no module in `require` provides {package}")
        return str(self.entry.spec["require"][max(owners, key=len)])

    def check_versions(self) -> None:
        """Every pinned module is in each binary at exactly its pinned version."""
        for binary in self.entry.spec["packages"]:
            info = self.run([go_binary(), "version", "-m", str(self.bin / binary)], cwd=self.work)
            built = {}
            for line in info.splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[0] in ("mod", "dep"):
                    built[fields[1]] = fields[2]
            for module, version in self.entry.spec.get("require", {}).items():
                if built.get(module) != version:
                    raise BuildError(
                        f"{binary} was built with {module} {built.get(module)}, not {version}"
                    )

    def go_build(self, directory: Path) -> None:
        spec = self.entry.spec
        for binary, package in spec["packages"].items():
            command = [go_binary(), "build", "-trimpath", "-o", str(self.bin / binary)]
            if spec.get("ldflags"):
                command += ["-ldflags", spec["ldflags"]]
            self.run([*command, package], cwd=directory)

    def build(self) -> None:
        recipe = self.entry.recipe
        spec = self.entry.spec
        if recipe == "module":
            directory = self.work / "module"
            directory.mkdir()
            self.main_module(directory)
            # Each package at its module's pinned version: a bare `go get` would upgrade it.
            packages = [f"{p}@{self.pinned_version(p)}" for p in spec["packages"].values()]
            self.run([go_binary(), "get", *packages], cwd=directory)
            self.go_build(directory)
            self.check_versions()
        elif recipe == "source":
            directory = self.work / "module"
            shutil.copytree(REPO / spec["source"], directory)
            self.main_module(directory)
            self.run([go_binary(), "mod", "tidy"], cwd=directory)
            self.go_build(directory)
            self.check_versions()
        elif recipe == "copy":
            info = self.download(spec["module"], spec["version"])
            directory = self.work / "module"
            shutil.copytree(info["Dir"], directory)
            for path in [directory, *directory.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
            go_mod = directory / "go.mod"
            go_mod.write_text(_drop_replaces(go_mod.read_text(), spec.get("drop_replaces", [])))
            if "generate" in spec:
                step = spec["generate"]
                self.run(step["command"], cwd=directory / step["dir"], env=step.get("env", {}))
            self.go_build(directory)
        elif recipe == "tarball":
            directory = self.unpack(spec["tarball"])
            go_mod = directory / "go.mod"
            go_mod.write_text(_drop_replaces(go_mod.read_text(), spec.get("drop_replaces", [])))
            edits = [
                f"-replace={module}={self.unpack(source)}"
                for module, source in spec.get("replace_with", {}).items()
            ]
            edits += [f"-require={module}@{version}" for module, version in self.requires()]
            if edits:
                self.run([go_binary(), "mod", "edit", *edits], cwd=directory)
            if spec.get("tidy", False):
                self.run([go_binary(), "mod", "tidy"], cwd=directory)
            if "generate" in spec:
                step = spec["generate"]
                self.run(step["command"], cwd=directory / step["dir"], env=step.get("env", {}))
            self.go_build(directory)
            self.check_versions()
        elif recipe == "files":
            ((module, version),) = spec["require"].items()
            info = self.download(module, version)
            for binary, relative in spec["files"].items():
                target = self.bin / binary
                shutil.copyfile(Path(info["Dir"]) / relative, target)
                target.chmod(0o755)
        else:
            raise BuildError(f"unknown recipe {recipe!r}")


def _replaces(go_mod: str) -> list[tuple[str, str]]:
    """(left, right) of every replace directive, block or single line."""
    found: list[tuple[str, str]] = []
    in_block = False
    for raw in go_mod.splitlines():
        line = raw.split("//")[0].strip()
        if line.startswith("replace ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if line.startswith("replace "):
            line = line.removeprefix("replace ").strip()
        elif not in_block:
            continue
        if "=>" in line:
            old, new = (part.strip() for part in line.split("=>", 1))
            found.append((old, new))
    return found


def _drop_replaces(go_mod: str, modules: list[str]) -> str:
    kept = []
    for raw in go_mod.splitlines():
        line = raw.strip().removeprefix("replace ").strip()
        if "=>" in line and line.split()[0] in modules:
            continue
        kept.append(raw)
    return "\n".join(kept) + "\n"


def build(group: str, names: list[str]) -> int:
    entries = load_entries(group)
    if names:
        unknown = sorted(set(names) - {entry.name for entry in entries})
        if unknown:
            raise SystemExit(f"unknown entries in {group}: {', '.join(unknown)}")
        entries = [entry for entry in entries if entry.name in names]
    os.nice(10)  # two shared cores: builds yield to everything else
    summary: list[tuple[str, str, float]] = []
    started = time.monotonic()
    for index, entry in enumerate(entries, 1):
        target = entry.directory()
        if entry.is_built():
            print(f"[{index}/{len(entries)}] {entry.name} {entry.version}: cached ({target})")
            summary.append((entry.name, "cached", 0.0))
            continue
        print(f"[{index}/{len(entries)}] {entry.name} {entry.version}: building …", flush=True)
        began = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=target.parent))
        log_path = target.parent / f"{entry.key()}.log"
        try:
            with log_path.open("w") as log:
                Builder(entry, work, log).build()
            stamp = {"entry": entry.spec, "go": go_version(), "seconds": time.monotonic() - began}
            (work / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            for child in work.iterdir():  # keep bin/ and the stamp only
                if child.name not in ("bin", STAMP):
                    _remove(child)
            work.rename(target)
            elapsed = time.monotonic() - began
            print(f"    built in {elapsed:.0f} s: {', '.join(entry.binaries)} in {target}/bin")
            summary.append((entry.name, "built", elapsed))
        except BuildError as error:
            _remove(work)
            elapsed = time.monotonic() - began
            print(f"    FAILED after {elapsed:.0f} s (log {log_path}):\n    {error}")
            summary.append((entry.name, "FAILED", elapsed))
    total = time.monotonic() - started
    print(f"\n{group} toolchain, {total:.0f} s in total:")
    for name, status, seconds in summary:
        print(f"  {name:<28} {status:<34} {seconds:>6.0f} s")
    return 1 if any(status == "FAILED" for _, status, _ in summary) else 0


def _remove(path: Path) -> None:
    """Go's module cache copies are read-only: make them writable before deleting."""
    if not path.exists():
        return
    if path.is_dir():
        for child in [path, *path.rglob("*")]:
            if not child.is_symlink():
                child.chmod(child.stat().st_mode | 0o700)
        shutil.rmtree(path)
    else:
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("probe", "build", "locate"):
        sub = commands.add_parser(name)
        sub.add_argument("group", choices=["oracles", "e2e"])
        if name == "build":
            sub.add_argument("names", nargs="*", help="only these entries")
        if name == "locate":
            sub.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe(args.group)
    if args.command == "build":
        return build(args.group, args.names)
    found = locate(args.group)
    if args.json:
        print(json.dumps({name: str(path) for name, path in found.items()}, indent=2))
    else:
        for entry in load_entries(args.group):
            for binary in entry.binaries:
                print(f"{binary:<32} {found.get(binary) or 'missing: ' + build_hint(args.group)}")
    expected = {b for e in load_entries(args.group) for b in e.binaries}
    return 0 if expected <= set(found) else 1


if __name__ == "__main__":
    sys.exit(main())
