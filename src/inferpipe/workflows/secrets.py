"""Where HTTP nodes' secrets come from: resolved by name when the node runs, never recorded.

A graph writes ``{{ secrets.HELPDESK_TOKEN }}``; the compiled plan keeps the reference, the step
records the request with the value replaced by ``[secret:HELPDESK_TOKEN]``, and only the
outgoing request carries the value.

Example::

    runtime = WorkflowRuntime(app, secrets=EnvSecrets(prefix="INFERPIPE_SECRET_"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from inferpipe.workflows.errors import WorkflowError


@runtime_checkable
class SecretProvider(Protocol):
    """Looks secrets up by name; None when the name is unknown."""

    def get_secret(self, name: str) -> str | None: ...


class EnvSecrets:
    """Secrets from environment variables: `name` is read from ``<prefix><name>``.

    Args:
        prefix: prepended to every name (e.g. ``INFERPIPE_SECRET_``); none by default.
        environ: the mapping to read (the process environment by default).
    """

    def __init__(self, *, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = environ

    def get_secret(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get(self.prefix + name)


class MappingSecrets:
    """Secrets from a mapping (tests, demos, or a vault client's snapshot)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get_secret(self, name: str) -> str | None:
        return self._values.get(name)


class SecretMissingError(WorkflowError):
    """A node references a secret the provider does not have; the node fails at once."""

    code = "secret_missing"

    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} is not set (the node references secrets.{name})")
        self.name = name


def resolve_secrets(provider: SecretProvider, names: tuple[str, ...]) -> dict[str, str]:
    """The values of `names`.

    Raises:
        SecretMissingError: naming the first secret that is not set.
    """
    values = {}
    for name in names:
        value = provider.get_secret(name)
        if value is None:
            raise SecretMissingError(name)
        values[name] = value
    return values


def placeholders(names: tuple[str, ...]) -> dict[str, str]:
    """What a step records in place of each secret's value."""
    return {name: f"[secret:{name}]" for name in names}
