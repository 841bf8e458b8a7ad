"""A name -> class registry (timm's ``register_model`` pattern) shared by every set of names:
estimators, scales, activations, loss terms, optimizers, schedulers, loggers, distillations."""

from __future__ import annotations

import inspect
from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``register(name)`` decorates a class or function (and sets its ``name``); ``get(name)``
    fails with a ConfigError that lists the valid names; ``build(name, **options)`` calls the
    entry and refuses options it does not take, listing those it does."""

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

    def unregister(self, name: str) -> None:
        """Remove ``name`` (entries registered at run time, e.g. by a test)."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self.names())}")
        return self._items[name]

    def options(self, name: str) -> list[str] | None:
        """The keyword options entry ``name`` takes (None: any, it has ``**kwargs``)."""
        item = self.get(name)
        params = inspect.signature(item.__init__ if inspect.isclass(item) else item).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]

    def build(self, name: str, *args, **options):
        """``get(name)(*args, **options)``; an option the entry does not take is a ConfigError."""
        valid = self.options(name)
        valid = None if valid is None else valid[len(args) :]
        unknown = [] if valid is None else sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} takes no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(valid) or '(none)'}"
            )
        return self.get(name)(*args, **options)
