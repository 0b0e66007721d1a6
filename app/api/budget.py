"""A worker's budget of image pixels in progress.

The in-flight bound counts requests, but requests differ by orders of magnitude: a 128 kB PNG of a flat
6300x6300 image decodes to 120 MB (plus Pillow's 160 MB while decoding, plus the grayscale copy for the
detector), so eight of them at once took one worker to 3.7 GB. Each landmark request therefore holds its
image's pixel count (read from the header) while it is decoded, detected and answered; past the budget
it waits its turn, first come first served. Small photos run side by side; an image larger than the
budget (LANDMARKS_MAX_PIXELS_IN_FLIGHT, 4 megapixels) runs alone. Videos have a budget of their own.
"""

import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from app.api import metrics
from app.inference.errors import InvalidImageError
from app.inference.imaging import read_image_size


class PixelBudget:
    """``capacity`` units shared by the requests of one worker (one event loop, so no locks are needed:
    nothing awaits between a check and its update). ``name`` labels its waits in the metrics."""

    def __init__(self, capacity: int, name: str = "photos") -> None:
        self.capacity = capacity
        self.name = name
        self.in_use = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    def _fits(self, weight: int) -> bool:
        return self.in_use == 0 or self.in_use + weight <= self.capacity

    def _grant_waiters(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            weight, granted = self._waiters.popleft()
            self.in_use += weight
            granted.set()

    @asynccontextmanager
    async def hold(self, weight: int) -> AsyncIterator[None]:
        """Hold ``weight`` units (at most the capacity) for the body of the ``async with``."""
        weight = max(0, min(weight, self.capacity))
        if not self._waiters and self._fits(weight):
            self.in_use += weight
            metrics.PIXEL_BUDGET_WAIT.labels(self.name).observe(0.0)
        else:
            entry = (weight, anyio.Event())
            self._waiters.append(entry)
            started = time.monotonic()
            try:
                await entry[1].wait()
                metrics.PIXEL_BUDGET_WAIT.labels(self.name).observe(time.monotonic() - started)
            except BaseException:  # cancelled while waiting, or just after being granted
                if entry[1].is_set():
                    self.in_use -= weight
                    self._grant_waiters()
                else:
                    self._waiters.remove(entry)
                    self._grant_waiters()  # those behind it may fit now
                raise
        try:
            yield
        finally:
            self.in_use -= weight
            self._grant_waiters()


def fitting_groups(weights: Sequence[int], capacity: int) -> list[list[int]]:
    """The indices of ``weights``, in order, cut into runs whose weights add up to at most ``capacity``
    (a weight over it forms a run of its own): the parts of a batch that may hold the budget at once."""
    groups: list[list[int]] = []
    total = 0
    for index, weight in enumerate(weights):
        if groups and total + weight <= capacity:
            groups[-1].append(index)
            total += weight
        else:
            groups.append([index])
            total = weight
    return groups


def announced_pixels(data: bytes, max_pixels: int) -> int:
    """The pixels an upload holds in the budget: those its header announces; 0 for a file that will be
    refused before decoding anyway."""
    try:
        width, height = read_image_size(data)
    except InvalidImageError:
        return 0
    return width * height if width * height <= max_pixels else 0
