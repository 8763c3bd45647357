"""Dockerfile and .dockerignore, statically: the stages, what each image contains and installs,
the command, the user, the health check, and Docker's own context rules."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.files import (ROOT, DockerIgnore, exec_form, parse_copy, read_lock,
                                requirements, stage_env, stage_workdir)
from tests.serve_command import GUNICORN_ARGV

FINAL_STAGES = ("api", "trainer")


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore((ROOT / ".dockerignore").read_text())


def pip_installs(stages) -> list[list[str]]:
    """The arguments of every `pip install` in the RUN instructions of `stages`."""
    found = []
    for stage in stages:
        for run in stage.all("RUN"):
            lexer = shlex.shlex(run.args, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            commands, words = [], []
            for token in lexer:       # split the shell line into commands at && ; || | ( )
                if token and set(token) <= set("&;|()"):
                    commands.append(words)
                    words = []
                else:
                    words.append(token)
            for words in commands + [words]:
                for i, word in enumerate(words[:-1]):
                    if word.endswith("pip") and words[i + 1] == "install":
                        found.append(words[i + 2 :])
    return found


def requirement_files(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg in ("-r", "--requirement")]


def direct_packages(args: list[str]) -> list[str]:
    """Positional arguments: packages named on the command line rather than in a file."""
    takes_value = {"-r", "--requirement", "--index-url", "-i", "--extra-index-url", "-c"}
    skip, packages = False, []
    for arg in args:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            packages.append(arg)
    return packages


# --- stages ----------------------------------------------------------------------------------

def test_the_default_target_is_the_serving_image(dockerfile):
    # `docker build .` builds the last stage: it must be the one without torch.
    assert dockerfile.stages[-1].name == "api"
    assert {"api", "trainer"} <= {stage.name for stage in dockerfile.stages}


def test_base_images_are_pinned_python_311_slim_tags(dockerfile):
    names = {stage.name for stage in dockerfile.stages}
    images = {stage.base for stage in dockerfile.stages if stage.base not in names}
    assert images, "no external base image"
    for image in images:
        repository, _, tag = image.partition("@")[0].partition(":")
        assert repository == "python", image
        assert tag and tag != "latest", f"{image}: pin a tag, never latest"
        assert re.fullmatch(r"3\.11(\.\d+)?-slim(-\w+)?", tag), f"{image}: not 3.11 slim"


def test_final_stages_run_as_an_unprivileged_numeric_user_set_before_the_command(dockerfile):
    for name in FINAL_STAGES:
        stage = dockerfile.stage(name)
        users = stage.all("USER")
        assert users, f"{name}: no USER, the container would run as root"
        uid, _, gid = users[-1].args.partition(":")
        assert uid.isdigit() and int(uid) != 0, f"{name}: USER {users[-1].args} (numeric, not 0)"
        assert gid.isdigit() and int(gid) != 0, f"{name}: USER {users[-1].args}"
        starts = stage.all("CMD") + stage.all("ENTRYPOINT")
        assert starts and all(users[-1].line < s.line for s in starts), f"{name}: USER after CMD"
        # and nothing after USER needs root
        assert not [i for i in stage.instructions if i.keyword == "RUN" and i.line > users[-1].line]


def test_both_images_share_the_user_that_compose_and_kubernetes_name(dockerfile):
    assert dockerfile.stage("api").all("USER")[-1].args == \
        dockerfile.stage("trainer").all("USER")[-1].args == "10001:10001"


def test_no_add_and_no_shell_form_commands(dockerfile):
    for stage in dockerfile.stages:
        assert not stage.all("ADD"), f"{stage.name}: use COPY (ADD fetches URLs and unpacks)"
        for instruction in stage.all("CMD") + stage.all("ENTRYPOINT"):
            exec_form(instruction.args)   # shell form would make /bin/sh PID 1 and eat SIGTERM


def test_pip_never_keeps_its_cache(dockerfile):
    installs = pip_installs(dockerfile.stages)
    assert installs
    for args in installs:
        assert "--no-cache-dir" in args, f"pip install {' '.join(args)}"


# --- what each image installs ----------------------------------------------------------------

def test_the_serving_image_installs_exactly_the_hashed_serve_lock_and_no_torch(dockerfile):
    lineage = dockerfile.lineage("api")
    installs = pip_installs(lineage)
    assert installs, "the api image installs nothing"
    files, packages = [], []
    for args in installs:
        files += requirement_files(args)
        packages += direct_packages(args)
        assert not any("download.pytorch.org" in arg for arg in args)
        assert "--require-hashes" in args, f"pip install {' '.join(args)}"
    assert not packages, f"packages named outside requirement files: {packages}"
    assert files == ["requirements/serve.lock"]
    installed = read_lock(ROOT / "requirements" / "serve.lock")
    assert "flask" in installed and "gunicorn" in installed and "onnxruntime" in installed
    assert "torch" not in installed
    # nor does any stage the serving image comes from copy the training requirements or code
    for stage in lineage:
        for copy in stage.all("COPY"):
            sources = parse_copy(copy.args).sources
            assert not [s for s in sources if "train" in s], f"{stage.name}: COPY {sources}"
    # the stage proves it at build time too
    assert any("find_spec('torch')" in run.args for run in dockerfile.stage("api").all("RUN"))


def test_the_trainer_installs_train_txt_with_torch_from_the_cpu_index(dockerfile):
    """Users get torch's CPU build from PyTorch's CPU index by default; TORCH_FIND_LINKS (a
    wheelhouse, what CI on a machine without that index uses) is the only other source."""
    installs = pip_installs(dockerfile.lineage("trainer"))
    files = [f for args in installs for f in requirement_files(args)]
    assert "requirements/train.txt" in files
    assert "torch" in requirements(ROOT / "requirements" / "train.txt")
    stage = dockerfile.stage("train-deps")
    args = dict(arg.args.split("=", 1) for arg in stage.all("ARG"))
    assert args == {"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu", "TORCH_FIND_LINKS": ""}
    run = next(r.args for r in stage.all("RUN") if "$TORCH_INDEX_URL" in r.args)
    assert '[ -z "$TORCH_FIND_LINKS" ]; then source="--index-url $TORCH_INDEX_URL"' in run
    # The pin is read from train.txt (not repeated here) and held to the CPU build (+cpu), from
    # either source; torch must come before train.txt, or pip resolves PyPI's CUDA build first.
    assert "torch_pin=\"$(grep -E '^torch==' requirements/train.txt)+cpu\"" in run
    torch = [i for i, args in enumerate(installs) if '"$torch_pin"' in args or "$torch_pin" in args]
    train = [i for i, args in enumerate(installs) if "requirements/train.txt" in requirement_files(args)]
    assert torch and train and torch[0] < train[0], installs


# --- what each image contains ----------------------------------------------------------------

def context_copies(dockerfile, name):
    """(source, destination) of every COPY from the build context in a stage's lineage."""
    return [(source, parse_copy(copy.args).destination)
            for stage in dockerfile.lineage(name) for copy in stage.all("COPY")
            if "from" not in parse_copy(copy.args).flags
            for source in parse_copy(copy.args).sources]


def test_the_serving_image_has_what_the_service_needs_and_nothing_of_training(dockerfile):
    sources = {source.rstrip("/") for source, _ in context_copies(dockerfile, "api")}
    assert {"lens", "service", "gunicorn.conf.py", "requirements/serve.lock",
            "models/mnist-cnn"} <= sources
    assert not {"training", "tests", "requirements/train.txt"} & sources


def test_the_trainer_has_the_training_code(dockerfile):
    sources = {source.rstrip("/") for source, _ in context_copies(dockerfile, "trainer")}
    assert {"lens", "training", "requirements/train.txt"} <= sources
    assert not {"service", "tests"} & sources


def test_every_copied_path_exists_and_is_let_in_by_dockerignore(dockerfile, dockerignore):
    copies = {source for stage in dockerfile.stages for copy in stage.all("COPY")
              if "from" not in parse_copy(copy.args).flags
              for source in parse_copy(copy.args).sources}
    assert copies
    for source in sorted(copies):
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such path in the repository"
        files = [path] if path.is_file() else [
            Path(d) / f for d, dirs, names in os.walk(path) for f in names
            if "__pycache__" not in Path(d).parts and not f.endswith(".pyc")]
        assert files, f"COPY {source}: empty"
        left_out = [str(f.relative_to(ROOT)) for f in files
                    if dockerignore.excluded(str(f.relative_to(ROOT)))]
        assert not left_out, f"COPY {source}: .dockerignore leaves out {left_out[:5]}"


def test_the_api_copies_land_where_the_command_runs(dockerfile):
    """gunicorn -c gunicorn.conf.py runs from WORKDIR, which must hold what the repository root
    holds for it: gunicorn.conf.py, service/ and lens/ (imported by path) and the default bundle
    at the settings' default relative path."""
    workdir = stage_workdir(dockerfile, "api")
    assert workdir.startswith("/")
    for source, destination in context_copies(dockerfile, "api"):
        if source.startswith("requirements/"):
            continue
        assert destination.rstrip("/") in (source.rstrip("/"),
                                           f"{workdir}/{source.rstrip('/')}"), (source, destination)


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", ".venv/lib/python3.11/site-packages/torch/__init__.py",
    "tests/__init__.py", "tests/service/conftest.py", "runs/checkpoint.pt",
    ".pytest_cache/v/cache/lastfailed", "lens/__pycache__/bundle.cpython-311.pyc",
    "service/__pycache__/settings.cpython-311.pyc", "service/settings.pyc",
    "models/mnist-cnn/__pycache__/x.pyc", "models/mnist-cnn.partial/manifest.json",
    "models/my-local-model/manifest.json", "examples/photo.jpg", ".env", "README.md",
    "docker-compose.yml", "requirements/test.txt", "deploy/kubernetes/deployment.yaml",
])
def test_dockerignore_keeps_out(dockerignore, path):
    assert dockerignore.excluded(path), f"{path} would be sent to the builder"


# the matcher itself, on cases whose outcome Docker documents
@pytest.mark.parametrize("patterns, path, excluded", [
    ("*", "a", True),
    ("*", "a/b/c", True),                 # through its parent directory
    ("*\n!a", "a/b", False),              # the last matching pattern decides
    ("*\n!a\na/*.pyc", "a/x.pyc", True),
    ("*.md", "docs/x.md", False),         # anchored at the context root, unlike .gitignore
    ("**/*.md", "docs/x.md", True),
    ("**/*.md", "x.md", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("*.py[cod]", "x.pyc", True),
    ("*.py[cod]", "x.py", False),
    ("/a/b/", "a/b/c", True),
    ("", "a", False),
])
def test_dockerignore_matcher(patterns, path, excluded):
    assert DockerIgnore(patterns).excluded(path) is excluded


# --- command, environment, health check ------------------------------------------------------

def test_the_container_command_is_the_one_ci_starts(dockerfile):
    api = dockerfile.stage("api")
    assert not api.all("ENTRYPOINT")
    assert exec_form(api.all("CMD")[-1].args) == GUNICORN_ARGV


def test_the_test_suite_starts_gunicorn_with_the_same_argv(monkeypatch, tmp_path):
    """tests/service/conftest.py's gunicorn() runs GUNICORN_ARGV (argv[0] being the venv's
    gunicorn) from the repository root: seen by catching the Popen it makes."""
    from tests.service import conftest
    calls = []
    monkeypatch.setattr(conftest.subprocess, "Popen",
                        lambda argv, **kwargs: calls.append((argv, kwargs)))
    with open(tmp_path / "log", "wb") as log:
        conftest.gunicorn({}, log)
    (argv, kwargs), = calls
    assert Path(argv[0]).name == GUNICORN_ARGV[0]
    assert list(argv[1:]) == GUNICORN_ARGV[1:]
    assert Path(kwargs["cwd"]).resolve() == ROOT


def test_the_api_image_listens_on_all_interfaces_on_the_exposed_port(dockerfile):
    env = stage_env(dockerfile, "api")
    host, _, port = env["CNNLENS_BIND"].rpartition(":")
    assert host == "0.0.0.0"
    assert dockerfile.stage("api").all("EXPOSE")[-1].args.split("/")[0] == port


def test_the_image_environment_holds_valid_settings(dockerfile):
    from tests.deploy.conftest import check_settings_env
    check_settings_env(stage_env(dockerfile, "api"), "Dockerfile api ENV")


def test_the_image_healthcheck_probes_readiness(dockerfile, route):
    from tests.deploy.test_healthcheck import healthcheck_url
    check = dockerfile.stage("api").all("HEALTHCHECK")[-1].args
    argv = exec_form(check[check.index("CMD") + 3 :].strip())
    url = healthcheck_url(argv)
    assert route(url.path) == "health.readyz"
    assert str(url.port) == stage_env(dockerfile, "api")["CNNLENS_BIND"].rpartition(":")[2]


def test_stop_signal_is_gunicorns_graceful_shutdown(dockerfile):
    assert dockerfile.stage("api").all("STOPSIGNAL")[-1].args == "SIGTERM"
