"""The admission queue on its own: slots, FIFO order, the two bounds, a client that leaves, the shutdown
grace, Retry-After from observed hold times. Real time on a real event loop (tenths of a second)."""

from functools import partial

import anyio
import pytest
from starlette.requests import ClientDisconnect

from app.api.admission import AdmissionQueue, AdmissionRefused


def run(test) -> None:
    anyio.run(test)


async def hold_until(queue: AdmissionQueue, released: anyio.Event, log: list, name: str, **kw) -> None:
    async with queue.slot(**kw):
        log.append(("start", name, queue.running))
        await released.wait()
    log.append(("end", name))


def refusal(exc_info: pytest.ExceptionInfo) -> str:
    return exc_info.value.reason


def test_requests_beyond_the_slots_wait_and_start_first_come_first_served():
    async def main() -> None:
        queue = AdmissionQueue(max_running=2, max_queue=10, queue_timeout=5)
        released = [anyio.Event() for _ in range(5)]
        log: list = []
        async with anyio.create_task_group() as group:
            for i in range(5):
                group.start_soon(hold_until, queue, released[i], log, f"r{i}")
                await anyio.sleep(0.01)  # arrive in this order
            await anyio.sleep(0.05)
            assert [e[1] for e in log if e[0] == "start"] == ["r0", "r1"]
            assert (queue.running, queue.waiting) == (2, 3)
            for i in (1, 0, 3, 2, 4):  # finish out of order: the queue still starts in arrival order
                released[i].set()
                await anyio.sleep(0.02)
        starts = [e for e in log if e[0] == "start"]
        assert [e[1] for e in starts] == ["r0", "r1", "r2", "r3", "r4"]
        assert max(e[2] for e in starts) == 2  # never more than two at once
        assert (queue.running, queue.waiting) == (0, 0)

    run(main)


def test_a_full_queue_refuses_at_once_with_queue_full():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=1, queue_timeout=5)
        released = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(hold_until, queue, released, [], "running")
            group.start_soon(hold_until, queue, released, [], "queued")
            await anyio.sleep(0.05)
            with pytest.raises(AdmissionRefused) as refused:
                queue.check_room()
            assert refusal(refused) == "queue_full"
            started = anyio.current_time()
            with pytest.raises(AdmissionRefused) as refused:
                await queue.acquire()
            assert refusal(refused) == "queue_full" and anyio.current_time() - started < 0.05
            assert refused.value.retry_after >= 1
            released.set()

    run(main)


def test_a_request_that_cannot_start_within_the_timeout_is_refused_and_leaves_the_queue():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=5, queue_timeout=0.3)
        released = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(hold_until, queue, released, [], "running")
            await anyio.sleep(0.02)
            started = anyio.current_time()
            with pytest.raises(AdmissionRefused) as refused:
                await queue.acquire()
            waited = anyio.current_time() - started
            assert refusal(refused) == "queue_timeout" and 0.28 < waited < 0.6
            assert (queue.running, queue.waiting) == (1, 0)
            released.set()
        async with queue.slot():  # and the queue serves the next one normally
            assert queue.running == 1

    run(main)


def test_a_client_that_disconnects_while_queued_leaves_at_once_and_never_starts():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=5, queue_timeout=5)
        released, gone = anyio.Event(), anyio.Event()
        log: list = []

        async def receive() -> dict:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def leaving_client() -> None:
            try:
                await hold_until(queue, released, log, "leaver", receive=receive)
            except ClientDisconnect:
                log.append(("disconnected", "leaver", anyio.current_time()))

        async with anyio.create_task_group() as group:
            group.start_soon(hold_until, queue, released, log, "running")
            await anyio.sleep(0.02)
            group.start_soon(leaving_client)
            await anyio.sleep(0.02)
            group.start_soon(hold_until, queue, released, log, "behind")
            await anyio.sleep(0.05)
            assert queue.waiting == 2
            left_at = anyio.current_time()
            gone.set()
            await anyio.sleep(0.02)
            assert queue.waiting == 1  # gone from the queue while the slot is still taken
            released.set()
        disconnected = [e for e in log if e[0] == "disconnected"]
        assert disconnected and disconnected[0][2] - left_at < 0.02
        assert [e[1] for e in log if e[0] == "start"] == ["running", "behind"]

    run(main)


def test_a_cancelled_waiter_leaves_the_queue():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=5, queue_timeout=5)
        released = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(hold_until, queue, released, [], "running")
            await anyio.sleep(0.02)
            with anyio.move_on_after(0.05):
                await queue.acquire()
            assert queue.waiting == 0
            released.set()
        assert queue.running == 0

    run(main)


def test_a_batch_counts_one_slot_per_image_capped_at_the_slots_and_keeps_its_turn():
    async def main() -> None:
        queue = AdmissionQueue(max_running=2, max_queue=10, queue_timeout=5)
        released = [anyio.Event() for _ in range(3)]
        log: list = []
        async with anyio.create_task_group() as group:
            group.start_soon(hold_until, queue, released[0], log, "single")
            await anyio.sleep(0.01)
            group.start_soon(partial(hold_until, queue, released[1], log, "batch of 5", weight=5))
            await anyio.sleep(0.01)
            group.start_soon(hold_until, queue, released[2], log, "single behind")
            await anyio.sleep(0.05)
            # One slot is free, but the batch (capped to 2) is first in line: nobody overtakes it.
            assert queue.running == 1 and queue.waiting == 3
            released[0].set()
            await anyio.sleep(0.02)
            assert queue.running == 2 and [e[1] for e in log if e[0] == "start"][-1] == "batch of 5"
            released[1].set()
            released[2].set()
        assert [e[1] for e in log if e[0] == "start"] == ["single", "batch of 5", "single behind"]

    run(main)


def test_retry_after_follows_the_observed_drain_rate():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=50, queue_timeout=30)
        assert queue.retry_after() == 1  # nothing observed yet
        for _ in range(3):
            async with queue.slot():
                await anyio.sleep(0.2)
        assert 0.19 < queue.hold_seconds < 0.4
        released = anyio.Event()
        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(hold_until, queue, released, [], f"r{i}")
            await anyio.sleep(0.05)
            # 20 slots of backlog, each held about 0.2 s, one at a time: about 4 s to drain.
            assert 4 <= queue.retry_after() <= 8
            released.set()

    run(main)


def test_at_shutdown_queued_requests_start_within_the_grace_or_are_refused():
    async def main() -> None:
        queue = AdmissionQueue(max_running=1, max_queue=10, queue_timeout=30)
        released = [anyio.Event() for _ in range(2)]
        outcomes: dict[str, str] = {}

        async def client(name: str, hold: anyio.Event) -> None:
            try:
                async with queue.slot():
                    outcomes[name] = "started"
                    await hold.wait()
            except AdmissionRefused as exc:
                outcomes[name] = exc.reason

        async with anyio.create_task_group() as group:
            group.start_soon(client, "running", released[0])
            await anyio.sleep(0.01)
            group.start_soon(client, "next", released[1])
            group.start_soon(client, "last", released[1])
            await anyio.sleep(0.02)
            queue.begin_shutdown(0.3)
            await anyio.sleep(0.1)
            released[0].set()  # within the grace: the next one starts
            await anyio.sleep(0.4)  # the grace is over: the last one is refused
            assert outcomes == {"running": "started", "next": "started", "last": "shutting_down"}
            with pytest.raises(AdmissionRefused) as refused:
                await queue.acquire()  # and so is anything arriving after it
            assert refusal(refused) == "shutting_down"
            released[1].set()
        assert (queue.running, queue.waiting) == (0, 0)

    run(main)
