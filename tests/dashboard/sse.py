"""A small server-sent events reader over an httpx streaming response (the wire format, parsed
the way a browser's EventSource does: fields until a blank line; `:` lines are comments)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Message:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Comment:
    text: str


def messages(response: httpx.Response) -> Iterator[Message | Comment]:
    """Messages (and comments) as they arrive; a block with only `retry:` is a Message too."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if fields or data:
                retry = fields.get("retry")
                yield Message(
                    event=fields.get("event", "message"),
                    data="\n".join(data),
                    id=fields.get("id"),
                    retry=int(retry) if retry and retry.isdigit() else None,
                )
            fields, data = {}, []
            continue
        if line.startswith(":"):
            yield Comment(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        else:
            fields[name] = value


def data_messages(response: httpx.Response) -> Iterator[Message]:
    """Only the messages that carry data (no comments, no `retry:`-only blocks)."""
    for item in messages(response):
        if isinstance(item, Message) and item.data:
            yield item
