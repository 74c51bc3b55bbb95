"""The one config loader: YAML files (``_base_`` inheritance) plus dotted overrides into a dataclass.

Used by experiments (``littune train``), studies (``littune study``) and run folders alike. OmegaConf
checks every key and type against the dataclass, so a typo or a wrong type fails with the key named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config file, override or value that cannot be used; the message names the key."""


class ConfigWarning(UserWarning):
    """A config that runs, but not as its author probably meant; the message names the key."""


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"{path}: _base_ cycle")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends: name the file and the line
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    base = node.pop("_base_", None)
    if base is None:
        return node
    return OmegaConf.merge(_load_yaml((path.parent / base).resolve(), seen + (path,)), node)


def load_structured(schema: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                    example: str = "train.batch_size=1024"):
    """A dataclass from a YAML file (``_base_`` allowed) plus dotted overrides, checked by OmegaConf.

    Unknown keys and wrong types fail with the file or override and the key named.
    """
    where = str(path) if path else "defaults"
    try:
        cfg = OmegaConf.structured(schema)
        if path:
            cfg = OmegaConf.merge(cfg, _load_yaml(Path(path).resolve()))
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"override '{o}' is not key=value (e.g. {example})")
            where = f"override '{o}'"
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o]))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"{where}: {msg}" + (f" (key: {key})" if key else "")) from None


def to_yaml(cfg: Any) -> str:
    """A config dataclass as YAML (what run folders keep as config.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def parse_options(schema: type, options: Any, where: str):
    """A dataclass from a mapping of options (e.g. one entry of ``evals``), unknown keys refused.

    ``where`` names the options in messages (``evals.flowers_zs``).
    """
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(dict(options or {})))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"{where}: {msg}" + (f" (key: {where}.{key})" if key else "")) from None
