"""Redaction of secrets from JSON-like data and from text, before anything is stored or logged.

A key is sensitive when its words end with the words of a configured name: with the default
names, `api_key`, `X-Api-Key`, `openaiApiKey`, `Authorization`, `db_password`, `client_secret` and
`access_token` are redacted, while `max_tokens`, `input_tokens` and `api_key_env` (a reference to a
key, not the key) are kept. Matching is case-insensitive and applies at any depth.

The engine applies `redact` to step inputs and outputs, run inputs (trigger events, invocation
data) and outputs, and log metadata before they are written, so a secret never reaches the store.

Example:
    redact({"headers": {"Authorization": "Bearer sk-1"}, "max_tokens": 5})
    # {"headers": {"Authorization": "[REDACTED]"}, "max_tokens": 5}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from inferpipe.core.events import Event

#: Names of keys whose values are secrets, matched on word endings (see the module docstring).
DEFAULT_REDACTED_KEYS: tuple[str, ...] = (
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
)

#: What a redacted value becomes.
REDACTED = "[REDACTED]"

# A secret shorter than this is not scrubbed from free text: it would mangle ordinary words.
_MIN_SCRUBBED_SECRET_LEN = 6

_SCALARS = frozenset({int, float, bool})
"""Types with nothing to redact in them (exactly these: a subclass takes the general path)."""

_LEAVES = frozenset({int, float, bool, str, type(None)})
"""Types a walk does not descend into (a string is scrubbed only of known secret values)."""

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


def redact(
    data: Any,
    keys: Iterable[str] = DEFAULT_REDACTED_KEYS,
    *,
    secret_values: Iterable[str] = (),
    replacement: str = REDACTED,
) -> Any:
    """Return `data` with the values of sensitive keys replaced.

    Args:
        data: JSON-like data: mappings, lists, tuples, strings, numbers, None.
        keys: Names of sensitive keys (matched case-insensitively on word endings).
        secret_values: Known secret strings, also scrubbed from inside any string value.
        replacement: What replaces a redacted value.

    Returns:
        New containers where something changed; `data` itself is never modified.
    """
    if data is None or isinstance(data, int | float):  # every step's scalar: nothing to walk
        return data
    names = _names(tuple(keys))
    secrets = tuple(secret_values)
    if not names.patterns and not secrets:
        return data
    return _redact(data, names, secrets, replacement)


def is_sensitive_key(key: str, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> bool:
    """Whether `key` names a secret according to `keys`."""
    return _names(tuple(keys)).sensitive(key)


def sensitive_key(keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> Callable[[str], bool]:
    """`is_sensitive_key` for one set of `keys`, to call for many keys."""
    return _names(tuple(keys)).sensitive


def scrub_text(text: str, secret_values: Iterable[str], replacement: str = REDACTED) -> str:
    """Replace every occurrence of the known secrets in `text` (error messages, log lines)."""
    for secret in secret_values:
        if len(secret) >= _MIN_SCRUBBED_SECRET_LEN:
            text = text.replace(secret, replacement)
    return text


def redact_decoded(data: Any, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> Any:
    """`redact` for a value the caller owns, fresh from JSON (dicts, lists, strings, numbers):
    `data` itself when nothing in it is sensitive (a step's output, its arguments), else a copy
    with the sensitive values replaced. Checking costs a walk; copying, only when needed."""
    if data is None or type(data) in _LEAVES:
        return data
    names = _names(tuple(keys))
    if not names.patterns or not _has_sensitive(data, names):
        return data
    return _redact(data, names, (), REDACTED)


def _has_sensitive(data: Any, names: _Names) -> bool:
    """Whether `data` holds a sensitive key at any depth."""
    kind = type(data)
    if kind is dict:
        for key, value in data.items():
            if isinstance(key, str) and names.sensitive(key):
                return True
            if type(value) not in _LEAVES and _has_sensitive(value, names):
                return True
        return False
    if kind is list:
        return any(_has_sensitive(item, names) for item in data if type(item) not in _LEAVES)
    if kind in _LEAVES:
        return False
    return bool(_redact(data, names, (), REDACTED) != data)  # anything else: compare a copy


def _redact(data: Any, names: _Names, secrets: tuple[str, ...], replacement: str) -> Any:
    # Leaves first: most values are, and the Mapping check (an ABC's) is slow.
    kind = type(data)
    if kind in _SCALARS or data is None:
        return data
    if kind is str or isinstance(data, str):
        return scrub_text(data, secrets, replacement) if secrets else data
    if kind is dict or isinstance(data, Mapping):
        return {
            key: (
                replacement
                if isinstance(key, str) and names.sensitive(key)
                else value
                if type(value) in _LEAVES and not (secrets and type(value) is str)
                else _redact(value, names, secrets, replacement)
            )
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        items = [
            item
            if type(item) in _LEAVES and not (secrets and type(item) is str)
            else _redact(item, names, secrets, replacement)
            for item in data
        ]
        return tuple(items) if isinstance(data, tuple) else items
    return data


_SEEN_KEYS = 4096
"""Keys whose verdict one set of names remembers (the keys of step data repeat)."""


class _Names:
    """A set of sensitive names, and the verdicts on the keys seen so far."""

    __slots__ = ("_seen", "patterns")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.patterns = tuple(words for words in (_key_words(key) for key in keys) if words)
        self._seen: dict[str, bool] = {}

    def sensitive(self, key: str) -> bool:
        verdict = self._seen.get(key)
        if verdict is None:
            words = _key_words(key)
            verdict = any(words[-len(pattern) :] == pattern for pattern in self.patterns)
            if len(self._seen) < _SEEN_KEYS:
                self._seen[key] = verdict
        return verdict


@lru_cache(maxsize=64)
def _names(keys: tuple[str, ...]) -> _Names:
    return _Names(keys)


@lru_cache(maxsize=4096)
def _key_words(key: str) -> tuple[str, ...]:
    spaced = _CAMEL_BOUNDARY.sub(" ", key)
    return tuple(word.lower() for word in _WORD_SEPARATORS.split(spaced) if word)


def redact_event(event: Event, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> Event:
    """The event with its `data` and `user` redacted (its id, name and time unchanged)."""
    return dataclasses.replace(
        event,
        data=redact(event.data, keys),
        user=None if event.user is None else redact(event.user, keys),
    )
