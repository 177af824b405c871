"""Package faces that load lazily: ``from tl_core.models import create_model`` imports the one
module that defines ``create_model`` on first use, so importing a package's face costs nothing
(the command line's quick start never pays for torch it does not use).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def lazy_face(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports ``exports``.

    Args:
        package: The package's ``__name__``.
        exports: Module name (inside the package) to the names it gives the package's face.
    """
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # Looked up in the defining module every time, never cached on the package, so the
        # face always gives what that module holds now (a test may have patched it).
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(home) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
