"""docs/deployment.md's commands name services, profiles, targets, files and training options
that exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.files import ROOT

DOC = ROOT / "docs" / "deployment.md"


def shell_lines() -> list[str]:
    """The commands of the doc's ```sh blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def compose_commands() -> list[list[str]]:
    found = []
    for line in shell_lines():
        for command in re.split(r"&&|;", line):
            words = shlex.split(command)
            if words[:2] == ["docker", "compose"]:
                found.append(words[2:])
    return found


def test_the_doc_shows_the_documented_workflow():
    text = DOC.read_text()
    for needle in ("docker compose up", "docker compose --profile train run --rm trainer",
                   "docker compose kill -s HUP api", "/admin/reload",
                   "kubectl apply -k deploy/kubernetes",
                   "deploy/kserve/inferenceservice.yaml"):
        assert needle in text, needle


def test_the_doc_sizes_replicas_from_a_measured_throughput():
    text = DOC.read_text()
    found = re.search(r"Throughput: one 2-core replica answered about ([\d,]+) .*?requests per second"
                      r".*?\(benchmarks\.md\)", text, re.S)
    assert found, "the Throughput paragraph must quote a figure from docs/benchmarks.md"
    assert int(found.group(1).replace(",", "")) > 0


def test_compose_commands_name_real_services_and_profiles(compose):
    commands = compose_commands()
    assert commands
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    for words in commands:
        if "--profile" in words:
            assert words[words.index("--profile") + 1] in profiles, words
        for verb in ("run", "kill", "logs"):
            if verb in words:
                rest = words[words.index(verb) + 1 :]
                skip = {"-s": 1, "-v": 1, "--rm": 0, "-f": 0}
                i = 0
                while rest[i] in skip:
                    i += 1 + skip[rest[i]]
                assert rest[i] in compose["services"], words


def trainer_arguments(compose) -> list[list[str]]:
    found = []
    for words in compose_commands():
        if "run" in words and "trainer" in words:
            found.append(words[words.index("trainer") + 1 :])
    return found


def test_trainer_commands_parse_with_the_training_cli(compose, monkeypatch):
    import training.__main__ as cli
    calls = []
    for command in list(cli.COMMANDS):
        monkeypatch.setitem(cli.COMMANDS, command, lambda args: calls.append(args) or 0)
    arguments = [a for a in trainer_arguments(compose) if a != ["--help"]]
    assert arguments
    volume = next(v["target"] for v in compose["services"]["trainer"]["volumes"])
    for argv in arguments:
        assert cli.main(argv) == 0, argv
        if calls[-1].command == "build":
            # the bundle goes into the shared volume, under the name the api will serve
            out = Path(calls[-1].out)
            assert out.parent == Path(volume), argv
            assert calls[-1].name in (None, out.name), argv


def test_build_targets_and_files_named_in_the_doc_exist(dockerfile):
    text = DOC.read_text()
    stages = {stage.name for stage in dockerfile.stages}
    for target in re.findall(r"--target (\S+)", text):
        assert target in stages, target
    for path in set(re.findall(r"`((?:deploy|docs|tests|requirements)/[\w./-]+)`", text)):
        assert (ROOT / path.rstrip("/")).exists(), path


@pytest.mark.parametrize("variable", ["CNNLENS_MODELS_DIR", "CNNLENS_ADMIN_TOKEN",
                                      "PROMETHEUS_MULTIPROC_DIR"])
def test_variables_the_doc_explains_are_the_ones_compose_sets(compose, variable):
    assert variable in DOC.read_text()
    assert variable in compose["services"]["api"]["environment"]
