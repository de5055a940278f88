"""One implementation per result type: the registries behind `explain`, `figure_for` and `to_csv`.

Whatever is done with a result (explaining it, drawing it, writing it as a table) is looked up by
the result's type, through its base classes, so each method adds its own entry and callers make
one call for any result.
"""

from __future__ import annotations

from collections.abc import Callable

from interp.errors import InvalidOptionError


class TypeRegistry:
    """`{result type: implementation}`, refusing a second entry for the same type."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.entries: dict[type, Callable] = {}

    def register(self, result_type: type) -> Callable[[Callable], Callable]:
        def register(implementation: Callable) -> Callable:
            if result_type in self.entries:
                raise ValueError(f"A {self.what} for {result_type.__name__} is already registered "
                                 f"({self.entries[result_type].__name__}).")
            self.entries[result_type] = implementation
            return implementation

        return register

    def find(self, result) -> Callable | None:
        return next((self.entries[t] for t in type(result).__mro__ if t in self.entries), None)

    def lookup(self, result) -> Callable:
        implementation = self.find(result)
        if implementation is None:
            known = ", ".join(sorted(t.__name__ for t in self.entries))
            raise InvalidOptionError(f"There is no {self.what} for {type(result).__name__} "
                                     f"results. Registered: {known}.")
        return implementation
