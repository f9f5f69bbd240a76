"""Old keyword and attribute names of the models, kept working for one release.

Issue 12 gave every model one vocabulary (see :mod:`nodecourse.models`). The names it replaced still
work until the next release: :func:`renamed` maps each old keyword to its new name and warns with a
``DeprecationWarning`` that says what to write instead; the old attribute names read the new ones
(with the same warning). Nothing else in the package uses the old names.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["renamed"]

T = TypeVar("T", bound=type)


def _warn(owner: str, old: str, new: str, what: str) -> None:
    warnings.warn(
        f"{owner}: the {what} {old!r} is now called {new!r} (the models' one vocabulary: input_size, "
        f"hidden_size, state_size, output_size); {old!r} stops working in the next release.",
        DeprecationWarning, stacklevel=3,
    )


def _alias(old: str, new: str) -> property:
    def get(self: object) -> object:
        _warn(type(self).__name__, old, new, "attribute")
        return getattr(self, new)

    return property(get, doc=f"Deprecated: the old name of ``{new}``.")


def renamed(old_to_new: Mapping[str, str]) -> Callable[[T], T]:
    """Class decorator: the constructor also takes each old keyword (with a DeprecationWarning), and each
    old attribute name reads the new attribute where the class has it.

    ``@renamed({"dim": "input_size"})`` makes ``Model(dim=2)`` mean ``Model(input_size=2)`` and warn;
    passing both names is a TypeError.
    """

    def decorate(cls: T) -> T:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):  # noqa: N807 - replaces the class's own __init__
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{type(self).__name__} got both {old!r} and its new name {new!r}; "
                                        f"pass only {new}=....")
                    _warn(type(self).__name__, old, new, "keyword")
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for old, new in old_to_new.items():
            if old not in cls.__dict__ and old != new:
                setattr(cls, old, _alias(old, new))
        return cls

    return decorate
