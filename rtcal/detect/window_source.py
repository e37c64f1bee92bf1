"""Where a training step's windows come from: simulated once, reused, optionally in parallel.

``WindowSource.samples(step)`` returns the ``batch_size`` windows of a step
(``train_data.window_plan``): the same windows serve ``views_per_window``
consecutive steps under different symmetries, so only the current group is
kept. With ``workers`` > 0 the windows are simulated in that many worker
processes (spawned, so no thread pool of the trainer is forked), and the next
group is submitted as soon as the current one is handed out, so simulation
overlaps training. Samples are a function of their seed alone, so the result
is the same with or without workers.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor

from rtcal.detect.train_data import (
    TrainDataConfig,
    TrainSample,
    make_sample,
    transform_sample,
    window_plan,
)


class WindowSource:
    """Training windows of each step (see the module docstring)."""

    def __init__(self, data: TrainDataConfig, base_seed: int, batch_size: int,
                 views_per_window: int, workers: int = 0) -> None:
        self.data, self.base_seed = data, base_seed
        self.batch_size, self.views = batch_size, views_per_window
        self._cache: dict[int, TrainSample] = {}
        self._pending: dict[int, Future] = {}
        self._pool = None
        if workers > 0:
            import multiprocessing

            spawn = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=spawn)

    def _plan(self, step: int) -> list[tuple[int, int]]:
        return window_plan(self.base_seed, step, self.batch_size, self.views)

    def _get(self, seed: int) -> TrainSample:
        if seed in self._cache:
            return self._cache[seed]
        if seed in self._pending:
            return self._pending.pop(seed).result()
        return make_sample(self.data, seed)

    def _prefetch(self, step: int) -> None:
        """Submit the windows of the group after ``step``'s to the workers."""
        next_step = (step // self.views + 1) * self.views
        for seed, _ in self._plan(next_step):
            if seed not in self._pending:
                self._pending[seed] = self._pool.submit(make_sample, self.data, seed)

    def samples(self, step: int) -> list[TrainSample]:
        """The windows of training step ``step``, each under its view."""
        plan = self._plan(step)
        self._cache = {seed: self._get(seed) for seed, _ in plan}  # this group only
        if self._pool is not None:
            self._prefetch(step)
        return [transform_sample(self._cache[seed], view) for seed, view in plan]

    def close(self) -> None:
        """Stop the workers (pending windows are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pending.clear()
