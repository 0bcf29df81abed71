"""Where HTTP nodes' secrets come from: resolved by name when the node runs, never recorded.

A graph writes ``{{ secrets.HELPDESK_TOKEN }}`` (whole, in a header or the body); the compiled
plan keeps the reference, the step records the request with the value replaced by
``[secret:HELPDESK_TOKEN]``, and only the outgoing request carries the value.

A name is looked up among the secrets of the run's workspace (`secret_store`); then, only when
the operator gave one, in a `SecretProvider` shared by every workspace. Reading the process
environment is such an opt-in, and always under a prefix, so a tenant cannot name the server's
own variables.

Example::

    runtime = WorkflowRuntime(app, secrets=EnvSecrets(prefix="INFERPIPE_SECRET_"))
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from inferpipe.core.errors import ConfigurationError
from inferpipe.workflows.errors import WorkflowError

WorkspaceLookup = Callable[[str, str], Awaitable[str | None]]
"""(workspace, name) -> the value of that workspace's secret, or None."""


@runtime_checkable
class SecretProvider(Protocol):
    """Looks secrets up by name; None when the name is unknown."""

    def get_secret(self, name: str) -> str | None: ...


class EnvSecrets:
    """Secrets from environment variables: `name` is read from ``<prefix><name>``; every
    workspace can read them, so only variables meant for graphs should carry the prefix.

    Args:
        prefix: prepended to every name (e.g. ``INFERPIPE_SECRET_``); required, so the
            server's own variables (a database password) are out of reach.
        environ: the mapping to read (the process environment by default).

    Raises:
        ConfigurationError: the prefix is empty.
    """

    def __init__(self, *, prefix: str, environ: Mapping[str, str] | None = None) -> None:
        if not prefix:
            raise ConfigurationError(
                "EnvSecrets needs a prefix (e.g. 'INFERPIPE_SECRET_'): without one, any "
                "workspace's graph could read any variable of the server's environment"
            )
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
        super().__init__(
            f"secret {name!r} is not set in this workspace (the node references "
            f"secrets.{name}; set it with PUT /v1/secrets/{name} or `inferpipe secrets set`)"
        )
        self.name = name


class SecretResolver:
    """Resolves an HTTP node's secrets for its run's workspace.

    Args:
        workspace: looks a name up among a workspace's own secrets (None: there are none).
        shared: the operator's opt-in provider, read when the workspace has no such secret.
    """

    def __init__(
        self, workspace: WorkspaceLookup | None, shared: SecretProvider | None = None
    ) -> None:
        self._workspace = workspace
        self._shared = shared

    async def resolve(self, workspace: str, names: tuple[str, ...]) -> dict[str, str]:
        """The values of `names` for a run of `workspace`.

        Raises:
            SecretMissingError: naming the first secret that is not set.
        """
        values = {}
        for name in names:
            value = None if self._workspace is None else await self._workspace(workspace, name)
            if value is None and self._shared is not None:
                value = self._shared.get_secret(name)
            if value is None:
                raise SecretMissingError(name)
            values[name] = value
        return values


class SecretMisuseError(WorkflowError):
    """A template uses a secret other than whole (see `_secret_use`); the node fails at once."""

    code = "secret_misuse"


def placeholders(names: tuple[str, ...]) -> dict[str, str]:
    """What a step records in place of each secret's value."""
    return {name: f"[secret:{name}]" for name in names}
