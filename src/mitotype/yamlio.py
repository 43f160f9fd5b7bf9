"""YAML as a user writes it: ``1e-3`` is a number, and a key given twice is an error.

PyYAML implements YAML 1.1, where a float needs a dot (``1.0e-3``), so ``lr: 1e-3`` silently becomes
the string ``'1e-3'``; and a mapping that repeats a key keeps the last value without a word. Both are
user mistakes or surprises that end in a wrong run, so every configuration is read through this loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mitotype.errors import ConfigError, special_file_kind

__all__ = ["UserYamlLoader", "parse_yaml_file", "parse_yaml_value"]

_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
"""YAML 1.1's float pattern plus YAML 1.2's exponent without a dot (``1e-3``, ``5E4``)."""


class UserYamlLoader(yaml.SafeLoader):
    """A safe loader reading ``1e-3`` as a float and refusing duplicate mapping keys."""

    source: str = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys itself
            if key in seen:
                raise ConfigError(
                    f"{self.source}: key '{key}' appears twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# Replace the implicit float resolver (the first characters that can start a float keep their lists).
UserYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
UserYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def _load(text: str, source: str) -> Any:
    loader = UserYamlLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_yaml_file(path: str | Path) -> Any:
    """The YAML document in ``path``; a missing, unreadable or invalid file is a ``ConfigError``."""
    path = Path(path)
    if (kind := special_file_kind(path)) is not None:  # reading it would wait for a writer
        raise ConfigError(f"{path}: is {kind}, not a configuration file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a configuration file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _load(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{at} is not valid YAML") from None


def parse_yaml_value(text: str, source: str = "--set") -> Any:
    """One ``--set`` value parsed as YAML (``1e-3`` -> 0.001, ``[a, b]`` -> list); text that is not
    valid YAML stays a string."""
    try:
        return _load(text, source)
    except yaml.YAMLError:
        return text
