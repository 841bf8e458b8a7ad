"""A name -> class registry (timm's ``register_model`` pattern) shared by the config groups."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``register(name)`` decorates a class (and sets its ``name``); ``get(name)`` fails
    with a ConfigError that lists the valid names."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind, self.plural = kind, plural or f"{kind}s"
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            item.name = name
            self._items[name] = item
            return item

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.names())}")
        return self._items[name]
