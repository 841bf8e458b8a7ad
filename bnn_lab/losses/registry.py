"""Name -> loss term (the ``loss`` config group: conf/loss/<name>.yaml)."""

from __future__ import annotations

from ..registry import Registry

TERMS: Registry[type] = Registry("loss term")
register_term = TERMS.register
term_names = TERMS.names
