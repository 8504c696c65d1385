"""Errors raised while building a dependency graph or applying a keep-set."""

from __future__ import annotations

from slimkit.errors import UserError


class GraphError(UserError):
    """The model cannot be analysed safely: an untraceable forward or an op the dependency
    graph does not understand. The message names the node and the way out (usually: add the
    enclosing layer to ``ignore`` so it is left whole)."""
