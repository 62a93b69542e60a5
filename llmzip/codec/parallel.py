"""Frames in parallel: worker processes on this machine, or Ray actors on a cluster.

Frames are independent (each has its own coder, predictor and mixer) and the engine gives the
same bits on every machine, so frames may be coded anywhere, in any order: the writer keeps
their order, and the output is byte-identical to a single-process run. Each worker holds one
model for its whole life (loaded once, from its own model cache); at most ``2 * workers``
frames are in flight, so memory stays bounded and stdin/stdout streaming still works.

A local worker that dies (killed, out of memory) is replaced and its frames are coded again,
up to :data:`RETRIES` times; then the run fails with one line. Ray actors restart and retry
their tasks the same way (``max_restarts``, ``max_task_retries``).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from llmzip.errors import LlmzipError

RETRIES = 2
_WORKER = None  # the FrameEncoder or FrameDecoder of this worker process


def _start(make: Callable, args: tuple, threads: int, gpus: bool, counter) -> None:
    """Worker process initializer: this process's share of threads (with ``gpus``: the GPU of
    its ordinal, one per visible GPU in turn), its model, no signals of its own (the parent
    cleans up)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    if gpus and torch.cuda.is_available():
        with counter.get_lock():
            ordinal = counter.value
            counter.value += 1
        torch.cuda.set_device(ordinal % torch.cuda.device_count())  # "cuda" means this one
    global _WORKER
    _WORKER = make(*args)


def _call(item):
    return _WORKER(item)


def threads_per_worker(workers: int, threads: int | None) -> int:
    """The threads each of ``workers`` local workers uses: the cores shared out (at least 1),
    unless ``threads`` is given."""
    if threads is not None:
        return threads
    return max(1, len(os.sched_getaffinity(0)) // workers)


class LocalWorkers:
    """``workers`` processes, each built by ``make(*args)`` (a picklable callable: items in,
    results out)."""

    def __init__(self, make: Callable, args_for: Callable[[int], tuple], workers: int,
                 threads: int | None, gpus: bool = False) -> None:
        self.make, self.workers, self.gpus = make, workers, gpus
        self.threads = threads_per_worker(workers, threads)
        self.args = args_for(self.threads)
        # Workers inherit the environment when they start (on demand, and again after a
        # crash): their thread pools, numba's included, get only their share of the cores.
        # Measured: two 1-thread workers with numba's default pool of one thread per core ran
        # 4x slower than one process, each pool's idle threads taking the other's core.
        self.saved = {name: os.environ.get(name) for name in _POOL_ENV}
        os.environ.update(_pool_env(self.threads))
        self.pool = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start,
                                   initargs=(self.make, self.args, self.threads, self.gpus,
                                             counter))

    def map(self, items: Iterable) -> Iterator:
        """Results in the order of ``items``; a dead worker's frames are coded again."""
        pending: collections.deque[tuple[object, Future, int]] = collections.deque()
        source = iter(items)
        more = True
        while True:
            more = more and _feed(source, pending, 2 * self.workers,
                                  lambda item: (item, self.pool.submit(_call, item), 0))
            if not pending:
                return
            _, future, tries = pending[0]
            try:
                result = future.result()
            except BrokenProcessPool:
                if tries >= RETRIES:
                    raise LlmzipError("a worker process died (killed or out of memory) and "
                                      f"its frame failed {RETRIES + 1} times") from None
                self._restart(pending)
                continue
            pending.popleft()
            yield result

    def _restart(self, pending: collections.deque) -> None:
        """A worker died: every frame in flight is lost with the pool; submit them again."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._pool()
        again = [(item, self.pool.submit(_call, item), tries + 1)
                 for item, _, tries in pending]
        pending.clear()
        pending.extend(again)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RayWorkers:
    """The same on a Ray cluster: ``workers`` actors of ``threads`` CPUs each (defaults: the
    cluster's CPUs shared out, 2 threads per actor when neither is given)."""

    def __init__(self, make: Callable, args_for: Callable[[int], tuple], workers: int | None,
                 threads: int | None, address: str, gpus: bool = False) -> None:
        try:
            import ray
        except ImportError:
            raise LlmzipError("--cluster needs Ray: pip install 'llmzip[cluster]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if address == "local":
                ray.init(**kwargs)
            else:
                ray.init(address=address, **kwargs)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if workers is None:  # actors of 2 threads each, as many as the cluster's CPUs hold
            threads = threads or min(2, cpus)
            workers = max(1, cpus // threads)
        else:  # an actor that asks for more CPUs than a node has would never start
            threads = threads or max(1, cpus // workers)
        actor = ray.remote(num_cpus=threads, num_gpus=1 if gpus else 0, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(_RayWorker)
        args = args_for(threads)
        env = {"env_vars": _pool_env(threads)}
        self.actors = [actor.options(runtime_env=env).remote(make, args, threads)
                       for _ in range(workers)]
        self.workers = workers

    def map(self, items: Iterable) -> Iterator:
        pending: collections.deque = collections.deque()
        source = iter(items)
        actors = itertools.cycle(self.actors)
        more = True
        while True:
            more = more and _feed(source, pending, 2 * self.workers,
                                  lambda item: next(actors).run.remote(item))
            if not pending:
                return
            try:
                yield self.ray.get(pending.popleft())
            except self.ray.exceptions.RayTaskError as e:
                cause = e.as_instanceof_cause()
                if isinstance(cause, LlmzipError):
                    raise LlmzipError(str(cause).split("\n")[-1]) from None
                raise LlmzipError(f"a cluster worker failed: {e}") from None
            except self.ray.exceptions.RayActorError as e:
                raise LlmzipError(f"a cluster worker died and could not be restarted: "
                                  f"{str(e).splitlines()[0]}") from None

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


class _RayWorker:
    def __init__(self, make: Callable, args: tuple, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.worker = make(*args)

    def run(self, item):
        return self.worker(item)


_END = object()
_POOL_ENV = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _pool_env(threads: int) -> dict[str, str]:
    """The thread-pool sizes of a worker with ``threads`` threads."""
    return dict.fromkeys(_POOL_ENV, str(threads))


def _feed(source: Iterator, pending: collections.deque, limit: int, submit: Callable) -> bool:
    """Submit items of ``source`` until ``limit`` are in flight; False once it is exhausted."""
    while len(pending) < limit:
        item = next(source, _END)
        if item is _END:
            return False
        pending.append(submit(item))
    return True


def workers_for(make: Callable, args_for: Callable[[int], tuple], workers: int | None,
                threads: int | None, cluster: str | None,
                device: str | None = None) -> LocalWorkers | RayWorkers | None:
    """The workers a run asked for (None: code in this process). Each is built by
    ``make(*args_for(threads))``, ``threads`` being its share of the CPUs; with ``device``
    "cuda", one GPU per worker (local: the visible GPUs in turn; Ray: a GPU each)."""
    gpus = (device or "cpu").startswith("cuda")
    if cluster:
        return RayWorkers(make, args_for, workers, threads, cluster, gpus)
    if workers and workers > 1:
        return LocalWorkers(make, args_for, workers, threads, gpus)
    return None
