"""A worker's admission queue: a few landmark requests run at once, the others wait their turn.

Load is queued, not refused. ``max_running`` slots bound the work on the CPU (as many as keep it busy);
a request that finds them taken waits, first come first served, in a queue of at most ``max_queue``
slots. It is refused (``AdmissionRefused``, which the web layer turns into ``503 overloaded`` with
``Retry-After``) only when the queue is full, or when it has waited ``queue_timeout`` seconds without
starting. A client that disconnects while queued leaves the queue at once and its work never starts.

Each request holds a ``weight``: one slot per image, so a batch of n images counts n (capped at
``max_running``: a batch larger than the slots runs alone). Usage::

    async with admission.slot(weight=len(images), receive=request.receive):
        ...  # the work; the slots are released when the block ends, whatever happens

or ``held = await admission.acquire(weight, receive=...)`` then ``admission.release(held)``.

``Retry-After`` comes from the drain rate the worker observes: ``max_running`` slots, each freed after
the (exponentially averaged) time a slot was recently held, so the backlog ahead of a refused request
drains in about ``backlog x hold / max_running`` seconds.

At SIGTERM (``begin_shutdown``) queued requests may still start for ``grace`` seconds; those still
waiting then, and any that arrive later, are refused with reason ``shutting_down``. Requests already
running finish. One event loop per worker, so no locks: nothing awaits between a check and its update.
"""

import asyncio
import math
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import ClientDisconnect

from app.api import metrics

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# How fast the observed hold time follows changes: each released slot moves it 10% of the way.
HOLD_SMOOTHING = 0.1
# Retry-After bounds: at least a second (the header is in whole seconds), at most a minute.
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 60


class AdmissionRefused(Exception):
    """The request cannot start: ``reason`` is ``queue_full``, ``queue_timeout`` or ``shutting_down``;
    ``retry_after`` is the number of seconds after which a retry is likely to be admitted."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason, self.message, self.retry_after = reason, message, retry_after


@dataclass
class Held:
    """Slots held by one admitted request (what ``acquire`` returns and ``release`` takes)."""

    weight: int
    started: float


@dataclass
class _Waiter:
    weight: int
    enqueued: float
    granted: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    held: Held | None = None  # set when granted
    disconnected: bool = False


class AdmissionQueue:
    """``max_running`` slots and a FIFO queue of at most ``max_queue`` slots for one worker."""

    def __init__(
        self,
        max_running: int,
        max_queue: int,
        queue_timeout: float,
    ) -> None:
        self.max_running = max_running
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.running = 0  # slots held by requests at work
        self.waiting = 0  # slots wanted by the requests in the queue
        self.hold_seconds: float | None = None  # smoothed time a slot is held; None until one is freed
        self.shutdown_deadline: float | None = None  # on the event loop's clock
        self._waiters: deque[_Waiter] = deque()

    # --- Taking and giving back slots ---------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, weight: int = 1, *, receive: Receive | None = None) -> AsyncIterator[Held]:
        """Hold ``weight`` slots for the body of the ``async with`` (see ``acquire``)."""
        held = await self.acquire(weight, receive=receive)
        try:
            yield held
        finally:
            self.release(held)

    async def acquire(self, weight: int = 1, *, receive: Receive | None = None) -> Held:
        """Wait for ``weight`` slots, first come first served, and take them.

        ``receive`` is the request's ASGI receive, once its body has been read: a disconnect while
        queued then raises ``ClientDisconnect`` at once. Raises ``AdmissionRefused`` when the queue is
        full, after ``queue_timeout`` seconds of waiting, or past the shutdown grace.
        """
        weight = self._effective(weight)
        self.check_room(weight)
        now = anyio.current_time()
        if not self._waiters and self.running + weight <= self.max_running:
            return self._start(weight, now)
        waiter = _Waiter(weight, now)
        self._waiters.append(waiter)
        self.waiting += weight
        metrics.QUEUE_DEPTH.inc(weight)
        try:
            with anyio.CancelScope(deadline=self._deadline(now)) as waiter.scope:
                await self._wait(waiter, receive)
        except BaseException:  # cancelled from outside (the server is stopping this task)
            if waiter.held is not None:
                self._free(waiter.held.weight)  # never used: no hold time to learn from
            else:
                self._leave(waiter, "cancelled")
            raise
        if waiter.held is not None:  # granted, even if a deadline or a disconnect came just after
            return waiter.held
        if waiter.disconnected:
            self._leave(waiter, "disconnected")
            raise ClientDisconnect
        if self._past_shutdown_grace():
            self._leave(waiter, "shutting_down")
            raise self._refusal("shutting_down")
        self._leave(waiter, "queue_timeout")
        raise self._refusal("queue_timeout")

    def release(self, held: Held) -> None:
        """Give the slots back and start the requests at the head of the queue that now fit."""
        seconds = anyio.current_time() - held.started
        if self.hold_seconds is None:
            self.hold_seconds = seconds
        else:
            share = 1 - (1 - HOLD_SMOOTHING) ** held.weight
            self.hold_seconds += share * (seconds - self.hold_seconds)
        self._free(held.weight)

    def check_room(self, weight: int = 1) -> None:
        """Raise ``AdmissionRefused`` now if a request of this weight would be refused on arrival (the
        queue is full, or the shutdown grace is over); lets a caller refuse before reading an upload."""
        weight = self._effective(weight)
        if self._past_shutdown_grace():
            raise self._refusal("shutting_down")
        must_queue = self._waiters or self.running + weight > self.max_running
        if must_queue and self.waiting + weight > self.max_queue:
            raise self._refusal("queue_full")

    # --- Shutdown and Retry-After -------------------------------------------------------------------

    def begin_shutdown(self, grace: float) -> None:
        """Queued requests may start for ``grace`` more seconds; then the rest are refused. Idempotent:
        a second signal does not extend the grace."""
        if self.shutdown_deadline is not None:
            return
        self.shutdown_deadline = anyio.current_time() + grace
        for waiter in self._waiters:
            if waiter.scope is not None:
                waiter.scope.deadline = min(waiter.scope.deadline, self.shutdown_deadline)

    def retry_after(self) -> int:
        """Seconds until the current backlog (running and queued slots) has drained at the observed rate."""
        if self.hold_seconds is None:
            return RETRY_AFTER_MIN
        backlog = self.running + self.waiting
        seconds = backlog * self.hold_seconds / self.max_running
        return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, math.ceil(seconds)))

    # --- Internals ----------------------------------------------------------------------------------

    def _effective(self, weight: int) -> int:
        return max(1, min(weight, self.max_running))

    def _deadline(self, enqueued: float) -> float:
        deadline = enqueued + self.queue_timeout
        if self.shutdown_deadline is not None:
            deadline = min(deadline, self.shutdown_deadline)
        return deadline

    def _past_shutdown_grace(self) -> bool:
        return self.shutdown_deadline is not None and anyio.current_time() >= self.shutdown_deadline

    async def _wait(self, waiter: _Waiter, receive: Receive | None) -> None:
        if receive is None:
            await waiter.granted.wait()
            return
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                waiter.disconnected = True
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            await waiter.granted.wait()
            group.cancel_scope.cancel()

    def _start(self, weight: int, enqueued: float) -> Held:
        now = anyio.current_time()
        self.running += weight
        metrics.IN_FLIGHT.inc(weight)
        metrics.QUEUE_WAIT.labels(outcome="started").observe(now - enqueued)
        return Held(weight, now)

    def _grant_waiters(self) -> None:
        while self._waiters and self.running + self._waiters[0].weight <= self.max_running:
            waiter = self._waiters.popleft()
            self.waiting -= waiter.weight
            metrics.QUEUE_DEPTH.dec(waiter.weight)
            waiter.held = self._start(waiter.weight, waiter.enqueued)
            waiter.granted.set()

    def _free(self, weight: int) -> None:
        self.running -= weight
        metrics.IN_FLIGHT.dec(weight)
        self._grant_waiters()

    def _leave(self, waiter: _Waiter, outcome: str) -> None:
        """Take a waiter out of the queue (it was not granted) and let those behind it move up."""
        self._waiters.remove(waiter)
        self.waiting -= waiter.weight
        metrics.QUEUE_DEPTH.dec(waiter.weight)
        metrics.QUEUE_WAIT.labels(outcome=outcome).observe(anyio.current_time() - waiter.enqueued)
        self._grant_waiters()

    def _refusal(self, reason: str) -> AdmissionRefused:
        metrics.REJECTED.labels(reason=reason).inc()
        if reason == "shutting_down":
            return AdmissionRefused(reason, "the service is shutting down; retry", RETRY_AFTER_MIN)
        if reason == "queue_full":
            message = f"the queue is full ({self.max_queue} waiting); retry after the Retry-After delay"
        else:
            message = f"the request waited {self.queue_timeout:g} s in the queue without starting; retry"
        return AdmissionRefused(reason, message, self.retry_after())


@contextmanager
def on_exit_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` on the event loop when SIGTERM or SIGINT arrives, then hand the signal on to
    the handler that was there before (uvicorn's, which starts its graceful shutdown). uvicorn keeps
    serving open requests until they finish, which is what lets ``begin_shutdown`` bound their wait.
    Does nothing off the main thread (signals can only be handled there, e.g. under TestClient)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(callback)
        if callable(previous[signum]):
            previous[signum](signum, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
