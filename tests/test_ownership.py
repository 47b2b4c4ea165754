"""One owner per channel on PostgreSQL: advisory locks on a connection of each replica's
own (core.store.locks), spread over the replicas, and taken over when the owner's
connection goes (core.app.ownership). Replicas here are Ownership objects in one process,
each with its own lock connection to a real PostgreSQL server."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
import sqlalchemy as sa

from core.app.ownership import Ownership
from core.store.locks import CHECK_TIMEOUT, ChannelLocks, LockConnectionLost, conninfo
from tests.adapter_harness import eventually

CHANNELS = ["telegram", "vk", "twitter"]


class Replica:
    """An Ownership whose channel terms are recorded instead of run."""

    def __init__(self, url: str, name: str):
        self.name = name
        self.running: set[str] = set()
        self.ended: list[str] = []
        self.handovers: list[bool] = []
        self.ownership = Ownership(CHANNELS, ChannelLocks(url), self._begin, self._end)
        self.stopping = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def _begin(self, channel: str) -> None:
        self.running.add(channel)

    async def _end(self, channel: str, handover: bool) -> None:
        self.running.discard(channel)
        self.ended.append(channel)
        self.handovers.append(handover)

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.ownership.run(self.stopping))
        return self

    async def stop(self) -> None:
        self.stopping.set()
        await self.task


def owners(replicas: list[Replica]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    for replica in replicas:
        for channel in replica.running:
            found[channel].append(replica.name)
    return found


def each_owned_once(replicas: list[Replica]) -> bool:
    return all(len(names) == 1 for names in owners(replicas).values())


async def test_a_channel_lock_is_held_by_one_connection_until_it_closes(postgres_url):
    a, b = ChannelLocks(postgres_url), ChannelLocks(postgres_url)
    await a.connect()
    await b.connect()
    try:
        assert await a.replicas() == 2 and await b.replicas() == 2
        assert await a.take("telegram")
        assert not await b.take("telegram")
        assert await b.take("vk")  # locks are per channel
        await a.give_up("telegram")
        assert await b.take("telegram")
        await b.close()  # the server releases what the connection held (in a moment)
        await eventually(lambda: a.take("telegram"), timeout=10, what="telegram released")
        assert await a.take("vk")
        assert await a.replicas() == 1
    finally:
        await a.close()
        await b.close()


async def test_a_dropped_lock_connection_is_reported_lost(postgres_url):
    locks = ChannelLocks(postgres_url)
    await locks.connect()
    assert await locks.take("vk")
    await _terminate(postgres_url, "sameday channel locks")
    with pytest.raises(LockConnectionLost):
        await locks.alive()
    assert not locks.connected and not locks.held
    await locks.close()


async def test_replicas_spread_the_channels_and_one_takes_over_when_another_dies(
        postgres_url):
    replicas = [Replica(postgres_url, name) for name in ("a", "b", "c")]
    for replica in replicas:
        replica.start()
    try:
        await eventually(lambda: each_owned_once(replicas), timeout=15,
                         what="every channel owned once")
        # Started together, each runs one: no replica is left with nothing to do.
        await asyncio.sleep(2.5)
        assert sorted(len(r.running) for r in replicas) == [1, 1, 1], owners(replicas)
        # The owner of telegram loses its database connection (killed, cut off): it
        # stops the channel itself and a survivor takes it over.
        victim = next(r for r in replicas if "telegram" in r.running)
        survivors = [r for r in replicas if r is not victim]
        await _terminate(postgres_url, "sameday channel locks",
                         pid=await _backend_pid(victim))
        await eventually(lambda: "telegram" in victim.ended, timeout=10,
                         what="the cut-off owner to stop telegram")
        assert not any(victim.handovers)  # lost, not handed over: receiving stops first
        await eventually(lambda: any("telegram" in r.running for r in survivors),
                         timeout=10, what="a survivor to take telegram")
        # Never two owners at once, and the victim rejoins as a standby.
        assert all(len(names) <= 1 for names in owners(replicas).values())
        await eventually(lambda: each_owned_once(replicas), timeout=10,
                         what="every channel owned once again")
    finally:
        for replica in replicas:
            await replica.stop()
    assert all(not r.running for r in replicas)  # a clean stop ends every term


async def test_one_replica_alone_runs_every_channel(postgres_url):
    alone = Replica(postgres_url, "alone").start()
    try:
        await eventually(lambda: alone.running == set(CHANNELS), timeout=15,
                         what="all channels on the only replica")
    finally:
        await alone.stop()
    # Stopping gave the locks back at once: another replica takes them immediately.
    locks = ChannelLocks(postgres_url)
    await locks.connect()
    try:
        assert all([await locks.take(channel) for channel in CHANNELS])
    finally:
        await locks.close()


async def _backend_pid(replica: Replica) -> int:
    row = await replica.ownership.locks._ask("SELECT pg_backend_pid()")
    return int(row[0])


async def _terminate(url: str, application: str, pid: int | None = None) -> None:
    """Drop lock connections server-side, as the server does when the network fails."""
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as admin:
        if pid is None:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = %s AND datname = current_database()",
                                (application,))
        else:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_replica_that_cannot_reach_the_server_keeps_trying(postgres_url):
    """A database restart: connecting fails for a while, and the replica runs its channels
    again once the server answers (it does not give up ownership for good)."""
    replica = Replica(postgres_url, "patient")
    locks = replica.ownership.locks
    unreachable = sa.engine.make_url(postgres_url).set(host="127.0.0.1", port=9)
    locks.url = unreachable.render_as_string(hide_password=False)  # nothing listens
    replica.start()
    try:
        await asyncio.sleep(2.5)  # failed checks
        assert replica.running == set() and not replica.task.done()
        locks.url = postgres_url  # the server is back
        await eventually(lambda: replica.running == set(CHANNELS), timeout=15,
                         what="the channels once the server answers")
    finally:
        await replica.stop()


class FreezableProxy:
    """A TCP proxy to PostgreSQL on 127.0.0.1 that can go silent: bytes stop flowing both
    ways while both connections stay open, as when a network path dies."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.frozen = asyncio.Event()
        self.server_sides: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.server_sides.append(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer),
                             self._pipe(upstream_reader, writer), return_exceptions=True)

    async def _pipe(self, reader, writer) -> None:
        while data := await reader.read(65536):
            if self.frozen.is_set():
                continue  # swallowed: nothing arrives, nothing is refused
            writer.write(data)
            await writer.drain()

    def server_gives_up(self) -> None:
        """What the server does when its keepalives go unanswered: drop the session."""
        for writer in self.server_sides:
            writer.transport.abort()

    async def stop(self) -> None:
        self.server.close()
        self.server_gives_up()


async def test_an_owner_cut_off_from_the_database_stops_before_another_takes_over(
        postgres_url):
    url = sa.engine.make_url(postgres_url)
    proxy = FreezableProxy(url.host, url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)
    owner = Replica(through_proxy, "owner").start()
    try:
        await eventually(lambda: owner.running == set(CHANNELS), timeout=15,
                         what="the owner to run every channel")
        standby = Replica(postgres_url, "standby").start()
        try:
            await asyncio.sleep(2)
            assert standby.running == set()
            proxy.frozen.set()  # the owner's network path dies silently
            await eventually(lambda: not owner.running, timeout=CHECK_TIMEOUT + 3,
                             what="the cut-off owner to stop its channels")
            # Until the server drops the old session its locks hold: never two owners.
            assert standby.running == set()
            proxy.server_gives_up()
            await eventually(lambda: standby.running == set(CHANNELS), timeout=10,
                             what="the standby to take every channel")
            assert owner.running == set()
        finally:
            await standby.stop()
    finally:
        await owner.stop()
        await proxy.stop()


async def test_channels_stop_on_a_lost_connection_even_while_another_is_starting(
        postgres_url):
    """Starting a channel reads the database and can hang while it is away; the channels
    already running must stop all the same, and the one that finishes starting after its
    lock is gone is stopped at once."""
    replica = Replica(postgres_url, "slow")
    starting_twitter = asyncio.Event()
    finish_twitter = asyncio.Event()
    quick_begin = replica._begin

    async def begin(channel: str) -> None:
        if channel == "twitter":
            starting_twitter.set()
            await finish_twitter.wait()
        await quick_begin(channel)

    replica.ownership._begin = begin
    replica.start()
    try:
        await eventually(lambda: starting_twitter.is_set(), timeout=15,
                         what="twitter to start")
        assert replica.running == {"telegram", "vk"}
        await _terminate(postgres_url, "sameday channel locks")
        await eventually(lambda: replica.running == set(), timeout=CHECK_TIMEOUT + 3,
                         what="the running channels to stop while twitter starts")
        finish_twitter.set()
        await eventually(lambda: "twitter" in replica.ended, timeout=5,
                         what="twitter stopped as soon as it started")
        assert replica.running == set() and not any(replica.handovers)
    finally:
        finish_twitter.set()
        await replica.stop()
