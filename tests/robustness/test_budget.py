"""The per-worker pixel budget: concurrent small images, a large one alone, first come first served."""

import anyio
from prometheus_client import REGISTRY

from app.api.budget import PixelBudget, fitting_groups


def waits(budget: str) -> tuple[float, float]:
    """(holds, seconds waited in all) of ``budget`` in the wait histogram."""
    labels = {"budget": budget}
    sample = REGISTRY.get_sample_value
    return (
        sample("landmarks_pixel_budget_wait_seconds_count", labels) or 0.0,
        sample("landmarks_pixel_budget_wait_seconds_sum", labels) or 0.0,
    )


def test_small_holds_share_the_budget_and_a_large_one_waits_for_it_to_empty():
    async def main() -> list[str]:
        budget = PixelBudget(100, "test-share")
        events: list[str] = []

        async def job(name: str, weight: int, seconds: float, start_after: float) -> None:
            await anyio.sleep(start_after)
            async with budget.hold(weight):
                events.append(f"start {name}")
                assert budget.in_use <= budget.capacity or budget.in_use == weight
                await anyio.sleep(seconds)
                events.append(f"end {name}")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(job, "a", 40, 0.05, 0.0)
            tasks.start_soon(job, "b", 40, 0.05, 0.0)
            tasks.start_soon(job, "big", 1000, 0.01, 0.01)  # more than the capacity: runs alone
            tasks.start_soon(job, "c", 10, 0.01, 0.02)  # fits, but arrived after big: waits behind it
        assert budget.in_use == 0
        return events

    holds, waited = waits("test-share")
    events = anyio.run(main)
    assert events[:2] == ["start a", "start b"]
    assert events.index("start big") > max(events.index("end a"), events.index("end b"))
    assert events.index("start c") > events.index("end big")
    # Every hold is in the metrics; big waited ~0.04 s for a and b, c ~0.04 s for big.
    after_holds, after_waited = waits("test-share")
    assert after_holds == holds + 4
    assert 0.06 <= after_waited - waited < 1.0


def test_a_cancelled_waiter_gives_its_place_to_the_next():
    async def main() -> None:
        budget = PixelBudget(10)
        order: list[str] = []

        async def holder() -> None:
            async with budget.hold(10):
                await anyio.sleep(0.05)

        async def waiter(name: str) -> None:
            async with budget.hold(10):
                order.append(name)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(holder)
            await anyio.sleep(0.01)
            with anyio.CancelScope() as doomed:
                doomed.cancel()
                await waiter("cancelled")  # never runs: cancelled before it is granted
            tasks.start_soon(waiter, "next")
        assert order == ["next"] and budget.in_use == 0 and not budget._waiters

    anyio.run(main)


def test_a_batch_is_cut_into_consecutive_groups_that_fit_the_budget():
    assert fitting_groups([], 10) == []
    assert fitting_groups([3, 3, 3, 3], 10) == [[0, 1, 2], [3]]
    assert fitting_groups([4, 20, 4, 4], 10) == [[0], [1], [2, 3]]  # one over the capacity goes alone
    assert fitting_groups([0, 0, 10], 10) == [[0, 1, 2]]
