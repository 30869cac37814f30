"""Reading a YAML file that must hold a mapping, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from entai.shared.core._errors import ConfigError

__all__ = ["read_yaml_mapping"]


def read_yaml_mapping(path: str | Path, kind: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file is an empty mapping).

    Args:
        path: The file.
        kind: What the file is, for messages ("settings file", "config file").

    Raises:
        ConfigError: the file cannot be read, is not YAML, or does not hold a mapping.
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{kind} {file} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{kind} {file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} {file} must hold a mapping at the top level")
    return data
