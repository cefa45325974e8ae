"""docker-compose.yml read as compose reads it: variables interpolated from an
.env, YAML anchors merged, each service's command as an argv. This machine
has no container engine, so the tests start these commands as processes."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "labplatform" / "ops" / "Dockerfile"

# $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>\w+))"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset its files use)."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _interpolate_values(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolate_values(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate_values(v, env) for k, v in value.items()}
    return value


def load_compose(env: dict[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """As compose does: YAML first (anchors merged), then the variables in
    every string value (so "${LIBVIRT_GID}" stays a string)."""
    data = _interpolate_values(yaml.safe_load(path.read_text()), env)
    assert isinstance(data, dict)
    return data


def env_file_variables(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )


@dataclass
class ComposeService:
    name: str
    argv: list[str]
    environment: dict[str, str]
    user: str | None
    group_add: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def service(compose: dict[str, Any], name: str) -> ComposeService:
    definition = compose["services"][name]
    command = definition.get("command")
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    health = definition.get("healthcheck", {}).get("test", [])
    return ComposeService(
        name=name,
        argv=argv,
        environment={k: str(v) for k, v in (definition.get("environment") or {}).items()},
        user=definition.get("user"),
        group_add=[str(g) for g in definition.get("group_add", [])],
        volumes=list(definition.get("volumes", [])),
        healthcheck=health[1:] if health[:1] == ["CMD"] else [],
    )


def dockerfile_env() -> dict[str, str]:
    """The image's ENV lines (NAME=value pairs), $PATH-style references kept."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    variables: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                variables[name] = value
    return variables
