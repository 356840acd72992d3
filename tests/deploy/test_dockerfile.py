"""The Dockerfile read without a Docker daemon: CPU torch, dependency layers before the
source, a non-root user, one image for the three services."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.deploy.composefile import (
    DOCKERIGNORE,
    REPO,
    Instruction,
    dockerfile_instructions,
    load_compose,
)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = ("memq", "gateway", "worker", "memory_service")


def _stage(index: int) -> list[Instruction]:
    return [i for i in dockerfile_instructions() if i.stage == index]


def _final_stage() -> list[Instruction]:
    return _stage(max(i.stage for i in dockerfile_instructions()))


def test_build_is_multi_stage_and_the_runtime_copies_the_dependencies() -> None:
    froms = [i.args for i in dockerfile_instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2
    deps_stage = froms[0].split(" AS ")[-1]
    copies = [i.args for i in _final_stage() if i.keyword == "COPY"]
    assert any(c.startswith(f"--from={deps_stage} ") for c in copies)


def test_torch_is_the_cpu_wheel_of_the_pinned_version() -> None:
    pinned = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    instructions = _stage(0)
    index = next(i.args for i in instructions if i.args.startswith("TORCH_INDEX_URL="))
    assert index == "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"
    torch_install = next(i.args for i in instructions if i.keyword == "RUN" and "torch" in i.args)
    assert '--index-url "$TORCH_INDEX_URL"' in torch_install
    assert pinned in torch_install.split(), f"the Dockerfile must install {pinned}"


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """So an edit to the code reuses the (large) dependency layers."""
    instructions = dockerfile_instructions()
    deps_install = next(
        n for n, i in enumerate(instructions) if i.keyword == "RUN" and "requirements.txt" in i.args
    )
    source_copies = [
        n
        for n, i in enumerate(instructions)
        if i.keyword == "COPY" and i.args.split()[0] in PACKAGES
    ]
    assert sorted(i.args.split()[0] for i in (instructions[n] for n in source_copies)) == sorted(
        PACKAGES
    )
    assert deps_install < min(source_copies)
    before = [i for i in instructions[:deps_install] if i.keyword == "COPY"]
    assert [i.args for i in before] == ["pyproject.toml /build/pyproject.toml"]
    package_install = next(
        i.args for i in _final_stage() if i.keyword == "RUN" and "pip install" in i.args
    )
    assert "--no-deps" in package_install


def test_the_requirements_step_lists_exactly_the_projects_dependencies(tmp_path: Path) -> None:
    """Run the Dockerfile's own command that turns pyproject.toml into requirements.txt."""
    run = next(i.args for i in _stage(0) if i.keyword == "RUN" and "tomllib" in i.args)
    command = run.split(" > /build/requirements.txt")[0]
    argv = shlex.split(command.replace("/build/pyproject.toml", str(REPO / "pyproject.toml")))
    assert argv[:2] == ["python", "-c"]
    out = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == PYPROJECT["project"]["dependencies"]


def test_the_image_runs_as_a_non_root_user_with_a_default_command() -> None:
    final = _final_stage()
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = json.loads(next(i.args for i in reversed(final) if i.keyword == "CMD"))
    assert cmd == ["python", "-m", "gateway"]
    # The same image serves every memq service of the compose file, with its own command.
    services = load_compose()["services"]
    built = {n for n, s in services.items() if s.get("build")}
    assert built == {"gateway", "memory_service", "worker"}
    assert {services[n]["image"] for n in built} == {"memq:latest"}


def test_the_volume_mount_points_belong_to_the_user() -> None:
    final = _final_stage()
    user = next(i.args for i in final if i.keyword == "USER")
    setup = next(i.args for i in final if i.keyword == "RUN" and "useradd" in i.args)
    assert f"chown -R {user}:{user} /data /home/{user}/.cache" in setup
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert f"HF_HOME=/home/{user}/.cache/huggingface" in env


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".memq", ".env"} <= patterns
    copied = {"pyproject.toml", "README.md", *PACKAGES}
    for pattern in patterns:
        regex = re.compile(re.escape(pattern).replace(r"\*", "[^/]*") + "$")
        assert not any(regex.match(name) for name in copied), f"{pattern} hides a needed file"
