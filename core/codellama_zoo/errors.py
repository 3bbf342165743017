"""The project's exceptions: every user-facing failure is a ``ZooError``.

Each error carries a message that names the bad value, says what is allowed and
how to fix it. The CLI prints ``str(error)`` on one line and exits with
``error.exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """Base class of every error the project raises on purpose."""

    exit_code: int = 1


class UsageError(ZooError):
    """The user asked for something that cannot work as asked."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name (model, backend, dataset, ...) that nothing registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(set(known))
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = f" (run `zoo {_listing_command(kind)}` to see them all)"
        super().__init__(f"unknown {kind} {name!r}{hint}{listing}")


def _listing_command(kind: str) -> str:
    return {"model": "models"}.get(kind, "plugins")


class UnknownModelError(UnknownNameError):
    """No registered model has this name or alias."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__("model", name, known)


class DuplicateRegistrationError(ZooError):
    """Two plugins registered the same name for the same kind of thing."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind, self.name, self.first, self.second = kind, name, first, second
        super().__init__(
            f"{kind} {name!r} is registered twice: by plugin {first!r} and by plugin "
            f"{second!r}; rename one, or pass replace=True to register() to override on purpose"
        )


class ConfigError(UsageError):
    """A configuration file or value is invalid."""


class CapabilityError(UsageError):
    """The model cannot do what was asked (e.g. infill on a Python variant)."""


class BackendUnavailableError(ZooError):
    """A runtime, device or kernel is not installed or not usable here."""


class WeightsError(ZooError):
    """Weights are missing, unreadable, or do not match the architecture."""


class PluginError(ZooError):
    """A plugin is broken: bad hook, failed import, invalid registration."""
