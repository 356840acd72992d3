"""Read docker-compose.yml and the Dockerfile the way Docker would, without a Docker daemon.

`interpolate` applies Compose's variable syntax (`${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?error}`, `${VAR?error}`, `$$`); `service_environment` resolves a service's
`environment` as Compose does: an entry without a value passes the variable through from the
user's environment when it is set there, and is left out otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# What a user must put in .env for `docker compose up` (and nothing else).
REQUIRED_ENV = {"MEMQ_SERVICE_TOKEN": "t" * 43, "MEMQ_QDRANT_API_KEY": "k" * 43}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset (or empty): Compose refuses to start."""


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif text[i] == "$" and (name := _NAME.match(text, i + 1)):
            out.append(env.get(name.group(), ""))
            i = name.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    name = _NAME.match(body)
    if name is None:
        raise ValueError(f"bad variable {body!r}")
    var, rest = name.group(), body[name.end() :]
    value = env.get(var)
    if not rest:
        return value or ""
    for op, if_empty in ((":-", True), ("-", False), (":?", True), ("?", False)):
        if rest.startswith(op):
            arg = rest[len(op) :]
            missing = value is None or (if_empty and value == "")
            if not missing:
                return value or ""
            if "?" in op:
                raise MissingVariable(f"{var}: {interpolate(arg, env)}")
            return interpolate(arg, env)
    raise ValueError(f"unsupported interpolation {body!r}")


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """The compose document with every string interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(n, env) for n in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def service_environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The variables the container gets from the service's `environment` (map form)."""
    declared = service.get("environment") or {}
    assert isinstance(declared, dict), "use the map form of environment"
    resolved: dict[str, str] = {}
    for key, value in declared.items():
        if value is None:
            if key in env:
                resolved[key] = env[key]
        else:
            resolved[key] = interpolate(str(value), env)
    return resolved


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int
    """Index of the FROM stage the instruction belongs to."""


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    return instructions
