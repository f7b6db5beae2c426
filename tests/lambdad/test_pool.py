"""The generic pool's bookkeeping (pure logic, a fake zygote): which spawns are on a caller's
request path, and which refill a waiting caller raises from the lowest CPU weight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from lambdad.sandboxes import GenericPool, Sandbox, Zygote


@dataclass
class FakeZygote:
    loop: asyncio.AbstractEventLoop
    runtime: str = "python3.11"
    spawned: list[tuple[int, str]] = field(default_factory=list)

    def spawn(self, count: int, source: str) -> bool:
        self.spawned.append((count, source))
        return True


@dataclass
class FakeSandbox:
    id: str
    cpu_lowered: bool = True
    alive: bool = True
    raised: int = 0

    def raise_cpu_weight(self) -> None:
        self.cpu_lowered = False
        self.raised += 1


def _pool(zygote: FakeZygote, base: int = 2) -> GenericPool:
    return GenericPool(cast(Zygote, zygote), base=base, ceiling=64)


def _sandbox(name: str, lowered: bool = True) -> Any:
    return FakeSandbox(name, cpu_lowered=lowered)


def test_refills_nobody_waits_for_are_pool_spawns() -> None:
    async def main() -> None:
        zygote = FakeZygote(asyncio.get_running_loop())
        _pool(zygote).replenish()
        assert zygote.spawned == [(2, "pool")]

    asyncio.run(main())


def test_spawns_asked_for_while_callers_wait_are_forks_for_them() -> None:
    async def main() -> None:
        zygote = FakeZygote(asyncio.get_running_loop())
        pool = _pool(zygote)
        pool.replenish()  # 2 refills in flight
        callers = [asyncio.ensure_future(pool.acquire(timeout=5)) for _ in range(5)]
        await asyncio.sleep(0)
        # Waiters + the target (one per sandbox taken in the last second, at least the base),
        # and every spawn asked for while callers wait is theirs.
        assert zygote.spawned[0] == (2, "pool")
        assert sum(n for n, _ in zygote.spawned) == 5 + 5
        assert {source for _, source in zygote.spawned[1:]} == {"fork"}
        for c in callers:
            c.cancel()
        await asyncio.gather(*callers, return_exceptions=True)

    asyncio.run(main())


def test_a_waiting_caller_raises_one_refill_still_setting_up() -> None:
    async def main() -> None:
        zygote = FakeZygote(asyncio.get_running_loop())
        pool = _pool(zygote)
        pool.replenish()
        first, second, dead = _sandbox("a"), _sandbox("b"), _sandbox("dead")
        dead.alive = False
        for s in (dead, first, second):
            pool.started(cast(Sandbox, s))
        assert (first.raised, second.raised) == (0, 0)  # nobody waits: they stay low
        caller = asyncio.ensure_future(pool.acquire(timeout=5))
        await asyncio.sleep(0)
        assert (dead.raised, first.raised, second.raised) == (0, 1, 0)  # the oldest alive
        pool.offer(cast(Sandbox, first))
        assert await caller is not None
        # A refill that starts while a caller waits is raised at once.
        waiting = asyncio.ensure_future(pool.acquire(timeout=5))
        await asyncio.sleep(0)
        assert second.raised == 1
        late = _sandbox("c")
        pool.started(cast(Sandbox, late))
        assert late.raised == 1
        pool.offer(cast(Sandbox, second))
        await waiting

    asyncio.run(main())


def test_a_sandbox_forked_for_a_caller_is_never_lowered() -> None:
    async def main() -> None:
        zygote = FakeZygote(asyncio.get_running_loop())
        pool = _pool(zygote)
        caller = asyncio.ensure_future(pool.acquire(timeout=5))
        await asyncio.sleep(0)
        forked = _sandbox("f", lowered=False)
        pool.started(cast(Sandbox, forked))
        pool.offer(cast(Sandbox, forked))
        sandbox, source = await caller
        assert sandbox is forked and source == "fork" and forked.raised == 0

    asyncio.run(main())
