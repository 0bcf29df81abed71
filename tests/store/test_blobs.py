"""Every `BlobStore` backend: content addressing, durability of a write, workspace scoping."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from inferpipe.core.errors import ConfigurationError
from inferpipe.core.records import NewRun, StepKind, StepRecord, StepStatus
from inferpipe.store import payloads
from inferpipe.store.base import Progress
from inferpipe.store.blobs import (
    BlobNotFoundError,
    BlobStore,
    FileBlobStore,
    MemoryBlobStore,
    blob_store_from_url,
)
from inferpipe.store.blobs import file as file_blobs
from inferpipe.store.blobs.base import CHUNK_BYTES
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.blobs import PostgresBlobStore
from inferpipe.store.sqlite import SQLiteStore
from tests.servers import free_port
from tests.store import blob_crash
from tests.store.conftest import PostgresServer


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A bucket on moto's S3 server, on loopback; the AWS_* variables point obstore at it."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("obstore")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    import httpx  # noqa: PLC0415

    httpx.put(f"http://127.0.0.1:{port}/blobs-test").raise_for_status()  # create the bucket
    try:
        yield "s3://blobs-test/app"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(params=["file", "memory", "s3", "postgres"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "file":
        yield FileBlobStore(tmp_path / "blobs")
    elif request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        # A database of its own: workspaces() lists every workspace's blobs.
        store = PostgresStore(await server.new_database())
        await store.open()
        try:
            assert isinstance(store.blobs, PostgresBlobStore)  # no blob URL: the database's table
            yield store.blobs
        finally:
            await store.close()
    else:
        url = request.getfixturevalue("s3_url")
        yield blob_store_from_url(f"{url}/{tmp_path.name}")


async def test_put_returns_the_sha256_and_get_the_bytes(blobs: BlobStore) -> None:
    data = b'{"text": "' + b"a" * 100_000 + b'"}'
    sha = await blobs.put("ws1", data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await blobs.get("ws1", sha) == data
    assert await blobs.put("ws1", data) == sha  # the same content, the same blob
    assert [b.sha256 for b in await blobs.list_blobs("ws1")] == [sha]
    assert await blobs.workspaces() == ["ws1"]


async def test_a_blob_is_read_only_through_its_workspace(blobs: BlobStore) -> None:
    sha = await blobs.put("ws1", b'"secret"')
    with pytest.raises(BlobNotFoundError):
        await blobs.get("ws2", sha)
    assert await blobs.list_blobs("ws2") == []


async def test_delete_removes_and_tolerates_a_missing_blob(blobs: BlobStore) -> None:
    sha = await blobs.put("ws1", b"[1, 2]")
    await blobs.delete("ws1", sha)
    await blobs.delete("ws1", sha)
    with pytest.raises(BlobNotFoundError):
        await blobs.get("ws1", sha)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def test_a_conditional_delete_spares_a_blob_written_since(blobs: BlobStore) -> None:
    before = _now_ms() - 1
    sha = await blobs.put("ws1", b'"doc"')
    assert await blobs.delete("ws1", sha, written_before_ms=before) is False
    assert await blobs.get("ws1", sha) == b'"doc"'
    later = _now_ms() + 86_400_000  # after any renewal (S3 counts its copy renewed an hour)
    assert await blobs.delete("ws1", sha, written_before_ms=later) is True
    assert await blobs.delete("ws1", sha, written_before_ms=later) is False
    with pytest.raises(BlobNotFoundError):
        await blobs.get("ws1", sha)


async def test_a_put_racing_the_sweeps_delete_keeps_its_blob(
    blobs: BlobStore,
) -> None:
    """The sweep deletes what was last written before a cutoff; a put of the same content
    after the cutoff, running at the same moment (threads, another connection), must find its
    blob stored when it returns, whichever of the two goes first."""
    if hasattr(blobs, "reuse_ms"):  # S3: every put writes a copy, so the delete may win
        blobs.reuse_ms = 0
    data = b'{"text": "' + b"r" * 50_000 + b'"}'
    kept = deleted = 0
    for _ in range(int(os.environ.get("INFERPIPE_RACE_LOOPS", "30"))):
        sha = await blobs.put("ws1", data)
        cutoff = _now_ms() + 1  # the blob above is older; the racing put below is not
        await asyncio.sleep(0.005)
        removed, _ = await asyncio.gather(
            blobs.delete("ws1", sha, written_before_ms=cutoff), blobs.put("ws1", data)
        )
        assert await blobs.get("ws1", sha) == data  # the put returned: its blob is there
        kept, deleted = kept + (not removed), deleted + removed
    assert kept + deleted > 0


async def test_get_many_reads_what_is_stored_in_the_workspace(blobs: BlobStore) -> None:
    one, two = await blobs.put("ws1", b'"one"'), await blobs.put("ws1", b'"two"')
    other = await blobs.put("ws2", b'"other"')
    missing = hashlib.sha256(b"never written").hexdigest()
    found = await blobs.get_many("ws1", [one, two, other, missing, "../../etc/passwd"])
    assert found == {one: b'"one"', two: b'"two"'}
    assert await blobs.get_many("ws1", []) == {}


async def test_open_streams_a_blob_in_chunks(blobs: BlobStore) -> None:
    random = b'"' + os.urandom(1_300_000).hex().encode() + b'"'  # 2.6 MB
    repetitive = b'"' + b"a" * 3_000_000 + b'"'  # a few KB once compressed
    for data in (random, repetitive):
        sha = await blobs.put("ws1", data)
        chunks = [chunk async for chunk in await blobs.open("ws1", sha)]
        assert b"".join(chunks) == data and len(chunks) > 1
        assert max(len(c) for c in chunks) <= CHUNK_BYTES
    with pytest.raises(BlobNotFoundError):
        await blobs.open("ws2", sha)  # before any chunk


async def test_a_malformed_hash_is_not_found(blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        await blobs.get("ws1", "../../etc/passwd")


async def test_file_blobs_are_compressed_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    data = b"[" + b'"same", ' * 200_000 + b'"end"]'
    shas = await asyncio.gather(*(store.put("w", data) for _ in range(4)))  # racing writers
    files = _files(tmp_path / "blobs")
    assert [p.name for p in files] == [f"{shas[0]}.json.gz"]
    assert files[0].stat().st_size < len(data) / 50


async def test_workspace_names_cannot_escape_the_root(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    for name in ("..", "../x", "a/b", "."):
        await store.put(name, b"1")
    inside = _files(tmp_path)
    assert inside and all((tmp_path / "blobs") in p.parents for p in inside)
    assert sorted(await store.workspaces()) == sorted(["..", "../x", "a/b", "."])


def test_the_url_selects_the_backend(tmp_path: Path) -> None:
    assert isinstance(blob_store_from_url(f"file://{tmp_path}"), FileBlobStore)
    assert isinstance(blob_store_from_url("memory://"), MemoryBlobStore)
    assert isinstance(blob_store_from_url(None, tmp_path), FileBlobStore)
    with pytest.raises(ConfigurationError, match="unsupported blob store URL"):
        blob_store_from_url("ftp://host/x")


async def test_postgres_workers_share_blobs_with_nothing_to_configure(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERPIPE_BLOBS_URL", raising=False)
    url = await postgres.new_database()
    writer, reader = PostgresStore(url), PostgresStore(url)  # as two machines would hold them
    monkeypatch.chdir(tmp_path)  # no folder of the working directory is involved
    for store in (writer, reader):
        await store.open()
    try:
        data = b'{"doc": "' + b"x" * 300_000 + b'"}'
        sha = await writer.blobs.put("ws1", data)
        assert await reader.blobs.get("ws1", sha) == data
    finally:
        for store in (writer, reader):
            await store.close()
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_postgres_blobs_are_rows_of_chunks_and_older_one_row_blobs_stay_readable(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    store = PostgresStore(url)
    await store.open()
    conn = await asyncpg.connect(url)
    try:
        data = b'"' + os.urandom(1_500_000).hex().encode() + b'"'  # 3 MB, about 1.6 once packed
        sha = await store.blobs.put("ws1", data)
        assert await store.blobs.put("ws1", data) == sha  # again: its chunks are not doubled
        sizes = await conn.fetch(
            "SELECT length(data) FROM blob_chunks WHERE sha256 = $1 ORDER BY seq", sha
        )
        assert len(sizes) == 2 and sizes[0][0] == CHUNK_BYTES
        # A blob as migration 0012 wrote it: the compressed bytes in the blobs row itself.
        old = b'{"doc": "' + b"y" * 2_000_000 + b'"}'
        old_sha = hashlib.sha256(old).hexdigest()
        await conn.execute(
            "INSERT INTO blobs (workspace, sha256, data, size, stored_at_ms)"
            " VALUES ('ws1', $1, $2, $3, 0)",
            old_sha,
            zlib.compress(old, 1),
            len(old),
        )
        for blob_sha, blob in ((sha, data), (old_sha, old)):
            assert await store.blobs.get("ws1", blob_sha) == blob
            assert b"".join([c async for c in await store.blobs.open("ws1", blob_sha)]) == blob
        assert await store.blobs.get_many("ws1", [sha, old_sha]) == {sha: data, old_sha: old}
        assert await store.blobs.delete("ws1", old_sha, written_before_ms=1)
        assert await store.blobs.delete("ws1", sha)
        assert await conn.fetchval("SELECT count(*) FROM blob_chunks") == 0  # with their row
        assert await store.blobs.list_blobs("ws1") == []
    finally:
        await conn.close()
        await store.close()


RACE_LOOPS = int(os.environ.get("INFERPIPE_BLOB_RACE_LOOPS", "1"))
RACE_BLOBS = 20


async def _wait_until_old(blobs: BlobStore, workspace: str, margin_ms: int) -> None:
    """Until every blob of `workspace` was last written more than `margin_ms` ago."""
    deadline = time.monotonic() + 60
    while any(b.stored_at_ms + margin_ms >= _now_ms() for b in await blobs.list_blobs(workspace)):
        assert time.monotonic() < deadline, "the blobs never got old"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("round_", range(RACE_LOOPS))
async def test_the_s3_sweep_keeps_a_blob_put_again_between_its_decision_and_its_delete(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, round_: int
) -> None:
    """The sweep decides that an old blob no row references is to go; before its DELETE
    reaches the bucket, a writer puts the same content again and commits a row that
    references it. Injected at that exact point (the sweep's call of obstore's delete), for
    each of 20 blobs: every reference committed must still read its blob after the sweep."""
    obstore = pytest.importorskip("obstore")
    blobs = blob_store_from_url(f"{s3_url}/{tmp_path.name}")
    blobs.reuse_ms = 1000  # type: ignore[attr-defined]  # a copy over a second old is rewritten
    store = SQLiteStore(tmp_path / "app.db", blobs=blobs)
    await store.open()
    try:
        offload = payloads.Payloads(blobs, store.workspace, threshold_bytes=10).offload
        docs = {}
        for i in range(RACE_BLOBS):
            ref = payloads.ref_of(await offload(f"document {i} " + "x" * 2000))
            assert ref is not None
            docs[ref.sha256] = f"document {i} " + "x" * 2000
        await _wait_until_old(blobs, store.workspace, margin_ms=1500)
        run = NewRun("run1", "fn", [], [], 0)
        await store.create_runs([run], 0)
        (claimed,) = await store.claim("w1", ["fn"], 1, 0, 3_600_000)
        real_delete, committed = obstore.delete_async, []

        async def writer_lands_first(bucket: Any, paths: Any) -> None:
            keys = [paths] if isinstance(paths, str) else list(paths)
            for sha in [sha for sha in docs if any(sha in key for key in keys)]:
                again = await offload(docs.pop(sha))  # the same document, processed again
                done = StepRecord(
                    run.id, sha, sha, StepKind.RUN, StepStatus.COMPLETED, output=again
                )
                await store.commit(claimed.lease, Progress(steps=[done]), 0)
                committed.append(sha)
            await real_delete(bucket, paths)

        monkeypatch.setattr(obstore, "delete_async", writer_lands_first)
        await payloads.sweep(store, _now_ms(), grace_ms=0)
        monkeypatch.undo()
        assert len(committed) == RACE_BLOBS  # the sweep decided to delete each of them
        assert await store.blob_refs() == set(committed)
        lost = []
        for sha in committed:
            try:
                await blobs.get(store.workspace, sha)
            except BlobNotFoundError:
                lost.append(sha)
        assert lost == [], f"{len(lost)} of {len(committed)} referenced blobs were deleted"
    finally:
        await store.close()


def _s3(url: str, **options: Any) -> Any:
    """An `S3BlobStore` and the bare bucket under it (to see and place keys)."""
    s3 = pytest.importorskip("inferpipe.store.blobs.s3")
    bucket = pytest.importorskip("obstore.store").S3Store.from_url(url)
    return s3.S3BlobStore.from_url(url, **options), bucket


async def _keys(bucket: Any) -> list[str]:
    obstore = pytest.importorskip("obstore")
    return sorted([m["path"] async for chunk in obstore.list(bucket) for m in chunk])


async def test_an_s3_put_reuses_a_recent_copy_and_replaces_an_older_one(
    s3_url: str, tmp_path: Path
) -> None:
    blobs, bucket = _s3(f"{s3_url}/{tmp_path.name}")
    data = b'{"doc": "' + b"c" * 10_000 + b'"}'
    sha = await blobs.put("ws1", data)
    assert await blobs.put("ws1", data) == sha
    (first,) = await _keys(bucket)  # written once: the second put found it recent
    assert first.startswith(f"ws1/{sha[:2]}/{sha}/") and first.endswith(".json.gz")
    blobs.reuse_ms = 0
    await blobs.put("ws1", data)
    (second,) = await _keys(bucket)  # a copy of its own; the one it supersedes is deleted
    assert second != first
    assert await blobs.get("ws1", sha) == data


async def test_an_s3_read_of_a_copy_it_knows_is_one_get_and_lists_once_that_copy_is_gone(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    obstore = pytest.importorskip("obstore")
    url = f"{s3_url}/{tmp_path.name}"
    (writer, _), (reader, _) = _s3(url, reuse_ms=0), _s3(url)  # as two processes hold them
    data = b'{"doc": "' + b"k" * 10_000 + b'"}'
    sha = await writer.put("ws1", data)
    real_list, listings = obstore.list, []

    def counted_list(*args: Any, **kw: Any) -> Any:
        listings.append(args[1] if len(args) > 1 else kw.get("prefix"))
        return real_list(*args, **kw)

    monkeypatch.setattr(obstore, "list", counted_list)
    assert await writer.get("ws1", sha) == data and listings == []  # the copy it wrote
    assert await reader.get("ws1", sha) == data and len(listings) == 1  # listed once
    assert [c async for c in await reader.open("ws1", sha)] == [data] and len(listings) == 1
    assert await reader.get_many("ws1", [sha]) == {sha: data} and len(listings) == 1
    monkeypatch.undo()
    await writer.put("ws1", data)  # a newer copy; the one the reader knows is deleted
    assert await reader.get("ws1", sha) == data  # a 404, then the listing finds the new one
    assert await writer.delete("ws1", sha)
    for store in (writer, reader):
        with pytest.raises(BlobNotFoundError):
            await store.get("ws1", sha)


async def test_s3_blobs_of_the_former_layout_are_read_and_collected(
    s3_url: str, tmp_path: Path
) -> None:
    obstore = pytest.importorskip("obstore")
    blobs, bucket = _s3(f"{s3_url}/{tmp_path.name}")
    kept, dropped = b'"kept, and written again"', b'"no longer referenced"'
    for data in (kept, dropped):
        sha = hashlib.sha256(data).hexdigest()
        await obstore.put_async(bucket, f"ws1/{sha[:2]}/{sha}.json.gz", gzip.compress(data))
    kept_sha, dropped_sha = (hashlib.sha256(d).hexdigest() for d in (kept, dropped))
    assert await blobs.get("ws1", kept_sha) == kept
    assert b"".join([c async for c in await blobs.open("ws1", kept_sha)]) == kept
    assert await blobs.get_many("ws1", [kept_sha]) == {kept_sha: kept}
    assert sorted(b.sha256 for b in await blobs.list_blobs("ws1")) == sorted(
        [kept_sha, dropped_sha]
    )
    assert await blobs.put("ws1", kept) == kept_sha  # a copy beside the former object
    assert len(await _keys(bucket)) == 3
    await blobs.collect_leftovers("ws1", now_ms=_now_ms(), written_before_ms=_now_ms())
    keys = await _keys(bucket)
    assert f"ws1/{kept_sha[:2]}/{kept_sha}.json.gz" not in keys and len(keys) == 2
    assert await blobs.get("ws1", kept_sha) == kept
    later = _now_ms() + 86_400_000
    assert await blobs.delete("ws1", dropped_sha, written_before_ms=later) is True
    assert await _keys(bucket) == [k for k in keys if dropped_sha not in k]
    with pytest.raises(BlobNotFoundError):
        await blobs.get("ws1", dropped_sha)


async def test_the_sweep_collects_an_s3_orphan_once_its_copy_cannot_be_reused(
    s3_url: str, tmp_path: Path
) -> None:
    """A put within `reuse_ms` of a copy writes nothing and counts it as renewed, so an
    orphan goes that much after the grace period."""
    blobs, _ = _s3(f"{s3_url}/{tmp_path.name}")
    store = SQLiteStore(tmp_path / "app.db", blobs=blobs)
    await store.open()
    try:
        orphan = await blobs.put(store.workspace, b'"written, then the commit crashed"')
        now = _now_ms()
        assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 2000) == 0
        later = now + payloads.SWEEP_GRACE_MS + blobs.reuse_ms + 2000
        assert await payloads.sweep(store, later) == 1
        with pytest.raises(BlobNotFoundError):
            await blobs.get(store.workspace, orphan)
    finally:
        await store.close()


CRASH_LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
ROOT = Path(__file__).resolve().parents[2]


def _start(mode: str, root: Path, marker: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.blob_crash", mode, str(root), str(marker), *args],
        cwd=ROOT,
    )


async def _killed_in(mode: str, root: Path, *args: str) -> None:
    """Run tests.store.blob_crash in `mode` and SIGKILL it where it stops."""
    marker = root.parent / "marker"
    child = _start(mode, root, marker, *args)
    deadline = time.monotonic() + 60
    try:
        while not marker.exists():
            assert child.poll() is None, "the process ended before it reached its stop"
            assert time.monotonic() < deadline, "the process never reached its stop"
            await asyncio.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    marker.unlink()


@pytest.mark.parametrize("round_", range(CRASH_LOOPS))
async def test_a_blob_held_aside_by_a_killed_sweep_is_put_back_for_the_next_sweep(
    tmp_path: Path, round_: int
) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    store = SQLiteStore(tmp_path / "app.db", blobs=blobs)
    await store.open()
    try:
        sha = await blobs.put(blob_crash.WORKSPACE, blob_crash.DOCUMENT)
        (path,) = _files(root)
        await _killed_in("sweep", root, sha)
        (held,) = _files(root)
        assert held.name.startswith(f".{path.name}.") and held.name.endswith(".sweep")
        assert await blobs.get(store.workspace, sha) == blob_crash.DOCUMENT  # read aside
        now = _now_ms()
        assert await payloads.sweep(store, now) == 0
        assert _files(root) == [held]  # aside only just: the sweep holding it may be alive
        assert await payloads.sweep(store, now + file_blobs.HELD_MS + 1000) == 0
        assert _files(root) == [path]  # put back, and young: kept
        assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 1
        assert _files(root) == []  # no row references it: decided on as any other
    finally:
        await store.close()


@pytest.mark.parametrize("round_", range(CRASH_LOOPS))
async def test_a_write_killed_half_way_leaves_a_temporary_file_the_sweep_removes(
    tmp_path: Path, round_: int
) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    store = SQLiteStore(tmp_path / "app.db", blobs=blobs)
    await store.open()
    try:
        await _killed_in("put", root)
        (tmp,) = _files(root)
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert await blobs.list_blobs(store.workspace) == []
        now = _now_ms()
        assert await payloads.sweep(store, now) == 0
        assert _files(root) == [tmp]  # within the grace period: it may be a write going on
        assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 0
        assert _files(root) == []
    finally:
        await store.close()
