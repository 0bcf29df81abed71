"""Payload references: a JSON value above the offload threshold lives in the blob store and
the row keeps `{"$inferpipe.blob": {"sha256", "size_bytes", "workspace", "preview"}}`.

`Payloads.offload` writes the blob (durable when it returns, so before the row that refers to
it commits); `Payloads.resolve` replaces references, at any depth, by their values, refusing a
reference to another workspace's blob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from inferpipe.store.base import PlannedEvent, Store
from inferpipe.store.blobs.base import BlobStore, BlobWorkspaceError

MARKER = "$inferpipe.blob"
"""The one key of a reference object."""

PREVIEW_CHARS = 200
"""How much of the value's JSON a reference keeps, for listings and the dashboard."""


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where an offloaded value is: its workspace, the sha256 and size of its JSON."""

    workspace: str
    sha256: str
    size_bytes: int
    preview: str

    def to_json(self) -> dict[str, Any]:
        return {
            MARKER: {
                "sha256": self.sha256,
                "size_bytes": self.size_bytes,
                "workspace": self.workspace,
                "preview": self.preview,
            }
        }


def ref_of(value: Any) -> BlobRef | None:
    """The reference `value` is, or None for an ordinary value."""
    if not isinstance(value, dict) or len(value) != 1 or MARKER not in value:
        return None
    body = value[MARKER]
    if not isinstance(body, dict):
        return None
    try:
        return BlobRef(
            str(body["workspace"]),
            str(body["sha256"]),
            int(body["size_bytes"]),
            str(body.get("preview", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def has_refs(value: Any) -> bool:
    """Whether `value` holds a reference at any depth."""
    if isinstance(value, dict):
        return ref_of(value) is not None or any(has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_refs(v) for v in value)
    return False


class Payloads:
    """Offloading and resolving for one workspace.

    Args:
        blobs: where offloaded values go.
        workspace: the workspace whose rows these values belong to.
        threshold_bytes: values whose JSON is longer are offloaded.
    """

    def __init__(self, blobs: BlobStore, workspace: str, threshold_bytes: int) -> None:
        self.blobs = blobs
        self.workspace = workspace
        self.threshold_bytes = threshold_bytes

    async def offload(self, value: Any, raw: bytes | None = None) -> Any:
        """What the row keeps for `value`: itself when small, else a reference (the blob is
        durable when this returns). `raw` is its JSON when the caller has it already."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if raw is None:
            raw = _dumps(value)
        if len(raw) <= self.threshold_bytes:
            return value
        return await self._store(raw)

    async def offload_fields(self, value: Any) -> Any:
        """What the row keeps for `value`, member by member: a large object or list keeps its
        small members inline and has its largest ones offloaded (each one a reference) until
        its JSON fits under the threshold, so what rows are matched on (trigger and wait
        expressions, concurrency keys, `function_id`) stays readable; any other large value
        is offloaded whole. Used for event data and step inputs."""
        raw = _dumps(value)
        if len(raw) <= self.threshold_bytes:
            return value
        if not isinstance(value, dict | list) or not value:
            return await self.offload(value, raw)
        out: dict[Any, Any] | list[Any] = dict(value) if isinstance(value, dict) else list(value)
        members = out.items() if isinstance(out, dict) else enumerate(out)
        encoded = sorted(((k, _dumps(v)) for k, v in members), key=lambda m: -len(m[1]))
        total = len(raw)
        for key, member in encoded:
            if total <= self.threshold_bytes:
                break
            ref = await self._store(member)
            out[key] = ref
            total -= len(member) - len(_dumps(ref))
        return out

    async def offload_event(self, planned: PlannedEvent) -> PlannedEvent:
        """`planned` with its event's data offloaded member by member (`offload_fields`),
        in the event and in the input of the runs it starts. Planned first, so triggers'
        expressions saw the whole data."""
        data = await self.offload_fields(planned.event.data)
        if data is planned.event.data:
            return planned
        event = dataclasses.replace(planned.event, data=data)
        body = event.as_dict()
        for run in planned.runs:
            if isinstance(run.input, list):
                run.input = [
                    body if isinstance(e, dict) and e.get("id") == event.id else e
                    for e in run.input
                ]
        return PlannedEvent(event, planned.runs)

    async def _store(self, raw: bytes) -> dict[str, Any]:
        sha = await self.blobs.put(self.workspace, raw)
        preview = raw[: PREVIEW_CHARS * 4].decode("utf-8", errors="ignore")[:PREVIEW_CHARS]
        return BlobRef(self.workspace, sha, len(raw), preview).to_json()

    async def read(self, ref: BlobRef) -> bytes:
        """The JSON of an offloaded value. Raises `BlobWorkspaceError` for another
        workspace's reference and `BlobNotFoundError` for a deleted blob."""
        if ref.workspace != self.workspace:
            raise BlobWorkspaceError(self.workspace, ref.workspace)
        return await self.blobs.get(self.workspace, ref.sha256)

    async def open(self, ref: BlobRef) -> AsyncIterator[bytes]:
        """The JSON of an offloaded value as a stream of chunks (`BlobStore.open`); refuses
        another workspace's reference, and raises `BlobNotFoundError` before any chunk."""
        if ref.workspace != self.workspace:
            raise BlobWorkspaceError(self.workspace, ref.workspace)
        return await self.blobs.open(self.workspace, ref.sha256)

    async def read_many(self, refs: Iterable[BlobRef]) -> dict[str, bytes]:
        """The JSON of each offloaded value of this workspace among `refs` that is stored,
        by sha256, read at once (a reference to another workspace is left out: `resolve`
        refuses it)."""
        shas = sorted({r.sha256 for r in refs if r.workspace == self.workspace})
        return await self.blobs.get_many(self.workspace, shas) if shas else {}

    async def resolve(self, value: Any, read: dict[str, bytes] | None = None) -> Any:
        """`value` with every reference in it replaced by what it refers to. `read`: JSON
        already read (`read_many`), taken out of it as it is used."""
        ref = ref_of(value)
        if ref is not None:
            raw = read.pop(ref.sha256, None) if read and ref.workspace == self.workspace else None
            return orjson.loads(raw if raw is not None else await self.read(ref))
        if isinstance(value, dict):
            if not has_refs(value):
                return value
            return {k: await self.resolve(v, read) for k, v in value.items()}
        if isinstance(value, list) and has_refs(value):
            return [await self.resolve(v, read) for v in value]
        return value


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def refs_in(value: Any) -> list[BlobRef]:
    """The references in `value`, at any depth, in order."""
    found: list[BlobRef] = []
    _refs(value, found)
    return found


def _refs(value: Any, found: list[BlobRef]) -> None:
    ref = ref_of(value)
    if ref is not None:
        found.append(ref)
    elif isinstance(value, dict):
        for v in value.values():
            _refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _refs(v, found)


def shas_in(documents: Iterable[bytes | str | None]) -> set[str]:
    """The blobs the JSON `documents` reference, at any depth."""
    return {r.sha256 for raw in documents if raw is not None for r in refs_in(orjson.loads(raw))}


SWEEP_GRACE_MS = 25 * 3_600_000
"""How old an unreferenced blob must be before a sweep deletes it: a blob is written before
the row that references it commits, so a younger one may belong to a commit still on its way;
and offloaded stream data is referenced only by its topic's history, kept up to 24 hours."""


async def sweep(store: Store, now_ms: int, grace_ms: int = SWEEP_GRACE_MS) -> int:
    """Delete the blobs of `store`'s workspace that no row references and that were last
    written before `now_ms - grace_ms`: those of purged runs, and orphans of a crash between
    a blob's write and its row's commit. What a write or a sweep killed half-way left behind
    is tidied first (`BlobStore.collect_leftovers`). Returns how many blobs were deleted."""
    # The protocol: a writer puts (writes or renews) a blob, then commits its row within the
    # grace period. The references are read first, in one statement; then each candidate is
    # deleted only if not put since the cutoff, atomically against a put
    # (`BlobStore.delete(written_before_ms=)`). A commit the read missed follows a put after
    # the cutoff, which either renewed the blob before the delete (kept) or wrote it again.
    cutoff = now_ms - grace_ms
    await store.blobs.collect_leftovers(store.workspace, now_ms=now_ms, written_before_ms=cutoff)
    referenced = await store.blob_refs()
    removed = 0
    for blob in await store.blobs.list_blobs(store.workspace):
        if blob.sha256 not in referenced and blob.stored_at_ms < cutoff:
            deleted = await store.blobs.delete(
                store.workspace, blob.sha256, written_before_ms=cutoff
            )
            removed += deleted
    return removed
