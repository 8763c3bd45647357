"""Readers for the deployment files, small enough to check by eye: a Dockerfile parser, Docker's
.dockerignore matching rules, pip requirement files with their -r includes, YAML documents."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


# --- Dockerfile ------------------------------------------------------------------------------

@dataclass
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY, ...
    args: str             # the rest of the line, continuations joined
    line: int             # 1-based line where it starts


@dataclass
class Stage:
    name: str | None
    base: str             # an image reference or an earlier stage's name, ARGs substituted
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def lineage(self, name: str) -> list[Stage]:
        """The stage, the stages it is built FROM, and (recursively) every stage whose files it
        copies with COPY --from: everything that can put something into that stage's image."""
        seen: list[Stage] = []
        todo = [name]
        names = {s.name for s in self.stages}
        while todo:
            stage = self.stage(todo.pop())
            if stage in seen:
                continue
            seen.append(stage)
            if stage.base in names:
                todo.append(stage.base)
            for copy in stage.all("COPY"):
                origin = parse_copy(copy.args).flags.get("from")
                if origin in names:
                    todo.append(origin)
        return seen


def read_dockerfile(path: Path) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and buffer):   # comments, even mid-instruction
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        if buffer.strip():
            logical.append((start, buffer.strip()))
        buffer = ""
    assert not buffer, f"{path}: ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical:
        keyword, _, args = text.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                           lambda m: global_args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, image))
        elif not stages:
            assert keyword == "ARG", f"{path}:{line}: only ARG may come before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args, line))
    return Dockerfile(global_args, stages)


@dataclass
class Copy:
    flags: dict[str, str]
    sources: list[str]
    destination: str


def parse_copy(args: str) -> Copy:
    flags = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        args = args.strip()
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    return Copy(flags, words[:-1], words[-1])


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; fails on the shell form."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def parse_env(args: str) -> dict[str, str]:
    env = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {args!r}: use the KEY=VALUE form"
        env[key] = value
    return env


def stage_env(dockerfile: Dockerfile, name: str) -> dict[str, str]:
    """The environment a stage's image has: its own ENV and those of the stages it is FROM."""
    chain = []
    stage = dockerfile.stage(name)
    names = {s.name for s in dockerfile.stages}
    while True:
        chain.append(stage)
        if stage.base not in names:
            break
        stage = dockerfile.stage(stage.base)
    env: dict[str, str] = {}
    for stage in reversed(chain):
        for instruction in stage.all("ENV"):
            env |= parse_env(instruction.args)
    return env


def stage_workdir(dockerfile: Dockerfile, name: str) -> str:
    stage, names = dockerfile.stage(name), {s.name for s in dockerfile.stages}
    while True:
        workdirs = stage.all("WORKDIR")
        if workdirs:
            return workdirs[-1].args
        assert stage.base in names, f"stage {name!r} sets no WORKDIR"
        stage = dockerfile.stage(stage.base)


# --- .dockerignore ---------------------------------------------------------------------------

@dataclass
class _Pattern:
    regex: re.Pattern
    exclusion: bool   # a "!" pattern: lets back in what an earlier pattern left out
    text: str


class DockerIgnore:
    """The rules of moby/patternmatcher, which both the classic builder and BuildKit use: patterns
    are matched against the path from the context root (no implicit "anywhere" as in .gitignore),
    `*` and `?` stop at `/`, `**` crosses directories, a pattern matching a parent directory
    matches everything below it, and the last pattern that matches decides."""

    def __init__(self, text: str):
        self.patterns: list[_Pattern] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            pattern = _clean(line[1:].strip() if exclusion else line)
            self.patterns.append(_Pattern(re.compile(_regex(pattern)), exclusion, line))

    def excluded(self, path: str) -> bool:
        path = _clean(path)
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:   # cannot change the outcome
                continue
            hit = bool(pattern.regex.match(path)) or any(
                pattern.regex.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched


def _clean(pattern: str) -> str:
    parts = [p for p in pattern.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def _regex(pattern: str) -> str:
    out, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out + "$"


# --- requirements ----------------------------------------------------------------------------

def requirements(path: Path) -> dict[str, str]:
    """Package name (normalised) -> requirement line, following -r includes."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            found |= requirements(path.parent / line.split(None, 1)[1])
            continue
        assert not line.startswith("-"), f"{path}: option {line!r} not understood by this test"
        name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
        found[re.sub(r"[-_.]+", "-", name).lower()] = line
    return found


@dataclass
class Locked:
    version: str
    hashes: list[str]     # "sha256:..." of every file pip may pick for this version


def read_lock(path: Path) -> dict[str, Locked]:
    """A pip-compile --generate-hashes lock: package name (normalised) -> version and hashes.
    Every requirement must be pinned with ==; continuation lines carry the hashes."""
    locked: dict[str, Locked] = {}
    text = re.sub(r"\\\n", " ", path.read_text())   # join continued lines
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=\S+)*)", line)
        assert match, f"{path}: {line!r} is not a hashed exact pin"
        name, version, hashes = match.groups()
        locked[re.sub(r"[-_.]+", "-", name).lower()] = Locked(
            version, [h.split("=", 1)[1] for h in hashes.split()])
    return locked


# --- YAML ------------------------------------------------------------------------------------

def yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
