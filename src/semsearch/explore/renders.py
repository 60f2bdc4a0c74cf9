"""Channel renders as jobs with progress: one worker thread, at the lowest CPU priority, runs
the asked-for channels of a layer one batch at a time (the newest request first), and, when
nothing is asked for, may pre-render a plan of layers (each model's feature layer and the
sweep's layers), so that the explorer finds them ready."""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from semsearch.errors import SemsearchError
from semsearch.explore.channels import (
    RENDER_BATCH,
    cached_channels,
    channel_images,
    check_channels,
)
from semsearch.explore.visualize import RenderSettings
from semsearch.models.layers import auto_layers
from semsearch.query.context import Context

log = logging.getLogger(__name__)

# The tiles the explorer shows per layer.
TILES = 30


class _Stop(Exception):
    """Raised between optimization steps: the job was cancelled or must make way."""


@dataclass
class RenderJob:
    """Some channels of one layer, rendered into the cache batch by batch."""

    id: int
    model: str
    layer: str
    channels: list[int]
    background: bool = False  # the idle pre-render
    state: str = "queued"  # queued, running, done, failed, cancelled
    rendered: list[int] = field(default_factory=list)  # ready in the cache, in order
    steps_done: int = 0
    steps_total: int = 0
    error: str = ""
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _running_since: float | None = None  # the current stretch of work (a job may pause)
    _busy_seconds: float = 0.0  # work before the current stretch

    @property
    def missing(self) -> list[int]:
        ready = set(self.rendered)
        return [c for c in self.channels if c not in ready]

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def fraction(self) -> float:
        """Gives how much is done, from 0 to 1 (a batch counts as its steps go)."""
        if not self.channels or self.state == "done":
            return 1.0
        return min(1.0, self.steps_done / self.steps_total) if self.steps_total else (
            len(self.rendered) / len(self.channels))

    @property
    def elapsed(self) -> float:
        """Gives the seconds of work spent on the job so far."""
        if self._running_since is None:
            return self._busy_seconds
        return self._busy_seconds + time.monotonic() - self._running_since

    def eta(self, seconds_per_step: float | None) -> float | None:
        """Gives the seconds still needed, from its own pace or else `seconds_per_step`
        (None until one is known)."""
        left = self.steps_total - self.steps_done
        if not self.active or left <= 0:
            return 0.0 if not self.active else None
        if self.steps_done:
            return self.elapsed / self.steps_done * left
        return None if seconds_per_step is None else seconds_per_step * left


class Renderer:
    """The render jobs of one session and the one thread that works on them."""

    def __init__(self, session: Context, settings: RenderSettings | None = None,
                 batch: int = RENDER_BATCH, kept: int = 64, idle_after: float = 5.0) -> None:
        self.session, self.settings, self.batch, self.kept = (
            session, settings or RenderSettings(), batch, kept)
        # The pre-render runs only once nothing has been asked of the server for this long.
        self.idle_after = idle_after
        self._last_request = time.monotonic()
        self._jobs: dict[int, RenderJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()  # re-entrant: _next submits plan entries
        self._thread: threading.Thread | None = None
        self._plan: list[tuple[str, str]] = []
        self._planner: Callable[[], Sequence[tuple[str, str]]] | None = None
        self._pace: dict[tuple[str, str], float] = {}  # seconds per step and image
        _open.add(self)

    def submit(self, model: str, layer: str, channels: Sequence[int],
               background: bool = False) -> RenderJob:
        """Gives a job for the channels' pictures, queued ahead of the ones before it;
        the cached ones count as done at once."""
        channels = list(dict.fromkeys(channels))
        check_channels(self.session, model, layer, channels)
        job = RenderJob(next(self._ids), model, layer, channels, background)
        cached = cached_channels(self.session, model, layer, channels, self.settings)
        job.rendered = [c for c in channels if c in cached]
        job.steps_total = self._steps(len(job.missing))
        with self._lock:
            if not job.missing:
                job.state, job.finished = "done", time.monotonic()
            self._jobs[job.id] = job
            self._forget()
            self._wake()
        return job

    def job(self, job_id: int) -> RenderJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[RenderJob]:
        """Gives the jobs kept, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: int) -> RenderJob | None:
        """Gives the job, stopped (between two steps) if it was still queued or running."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.active:
                job.state, job.finished = "cancelled", time.monotonic()
            return job

    def seconds_per_step(self, job: RenderJob) -> float | None:
        """Gives the seconds an optimization step of the job's next batch should take, from
        the last batch of its layer (None before one has run)."""
        pace = self._pace.get((job.model, job.layer))
        return None if pace is None else pace * min(self.batch, max(1, len(job.missing)))

    def touch(self) -> None:
        """Notes a request to the server: the pre-render stops between two steps, and
        waits until the server has been idle for `idle_after` seconds again."""
        self._last_request = time.monotonic()

    def idle(self) -> bool:
        """Tells if the server has had no request for `idle_after` seconds."""
        return time.monotonic() - self._last_request >= self.idle_after

    @property
    def planned(self) -> int:
        """Gives how many layers of the pre-render plan are still to look at."""
        with self._lock:
            return len(self._plan)

    def prerender(self, plan: Callable[[], Sequence[tuple[str, str]]]) -> None:
        """Renders the first tiles of each (model, layer) that plan() gives (worked out by
        the worker: layer tables may build networks) whenever nothing else is asked for."""
        with self._lock:
            self._planner = plan
            self._wake()

    def close(self, seconds: float = 10.0) -> None:
        """Cancels every job and the plan, and waits for the worker to stop."""
        with self._lock:
            self._plan.clear()
            self._planner = None
            for job in self._jobs.values():
                if job.active:
                    job.state, job.finished = "cancelled", time.monotonic()
            thread = self._thread
        if thread is not None:
            thread.join(seconds)

    def _steps(self, channels: int) -> int:
        return -(-channels // self.batch) * self.settings.steps

    def _wake(self) -> None:
        # Called holding the lock; the worker clears _thread under it when it stops.
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="semsearch-render",
                                            daemon=True)
            self._thread.start()

    def _forget(self) -> None:
        # Called holding the lock: the oldest finished jobs go once too many are kept.
        for job_id in [j.id for j in self._jobs.values() if not j.active]:
            if len(self._jobs) <= self.kept:
                break
            del self._jobs[job_id]

    def _next(self) -> RenderJob | None:
        """Gives the job to work on: the newest asked-for one, else, if the server is idle,
        the oldest pre-render begun or the next layer of the plan that is not all cached.
        Called holding the lock."""
        asked = [j for j in self._jobs.values() if j.active and not j.background]
        if asked:
            return asked[-1]
        if not self.idle():
            return None
        queued = [j for j in self._jobs.values() if j.active]
        if queued:
            return queued[0]
        while self._plan:
            model, layer = self._plan.pop(0)
            try:
                table = {info.name: info for info in self.session.models.layer_table(model)}
                if layer in table and table[layer].height:
                    job = self.submit(model, layer, range(min(TILES, table[layer].channels)),
                                      background=True)
                    if job.active:
                        return job
            except SemsearchError as exc:  # a model or layer that is not there any more
                log.warning("pre-render of %s %s skipped: %s", model, layer, exc)
        return None

    def _work(self) -> None:
        _lowest_priority()
        while True:
            with self._lock:
                job = self._next()
                waiting = bool(self._plan or self._planner
                               or any(j.active for j in self._jobs.values()))
                if job is None and not waiting:
                    self._thread = None
                    return
                planner = self._planner if job is None and self.idle() else None
                self._planner = None if planner else self._planner
            if planner is not None:
                self._make_plan(planner)
            elif job is None:
                time.sleep(_IDLE_POLL)  # a pre-render waits for the server to be idle
            else:
                self._run_batch(job)

    def _make_plan(self, planner: Callable[[], Sequence[tuple[str, str]]]) -> None:
        # Outside the lock: a plan reads layer tables, which may build networks.
        try:
            plan = list(planner())
        except Exception:  # the pre-render is a nicety: asked-for jobs still run
            log.exception("no pre-render plan")
            plan = []
        with self._lock:
            self._plan.extend(plan)

    def _run_batch(self, job: RenderJob) -> None:
        """Renders the job's next batch. A cancel, or for a pre-render a job asked for
        meanwhile, stops it between two steps (that batch is redone when it resumes)."""
        # Channels another job rendered meanwhile are done: the batch takes the next ones.
        cached = cached_channels(self.session, job.model, job.layer, job.missing, self.settings)
        with self._lock:
            ready = set(job.rendered) | set(cached)
            job.rendered = [c for c in job.channels if c in ready]
            if not job.active or not job.missing:
                if job.active:
                    job.state, job.finished = "done", time.monotonic()
                return
            chunk = job.missing[:self.batch]
            job.steps_total = job.steps_done + self._steps(len(job.missing))
            job.state = "running"
            job.started = job.started or time.monotonic()
            job._running_since = began = time.monotonic()
        done_before = job.steps_done

        def step(done: int, _total: int) -> None:
            job.steps_done = done_before + done
            if not job.active or (job.background and (self._asked_for(job) or not self.idle())):
                raise _Stop

        failure = ""
        try:
            channel_images(self.session, job.model, job.layer, chunk, self.settings,
                           batch=self.batch, progress=step)
        except _Stop:
            job.steps_done, chunk = done_before, []
            if job.active:
                job.state = "queued"
        except Exception as exc:  # the worker must live on: the job tells what went wrong
            log.exception("rendering %s %s failed", job.model, job.layer)
            failure, chunk = str(exc) or type(exc).__name__, []
        with self._lock:
            if chunk and job.steps_done > done_before:
                self._pace[(job.model, job.layer)] = (
                    (time.monotonic() - began) / (job.steps_done - done_before) / len(chunk))
            ready = set(job.rendered) | set(chunk)
            job.rendered = [c for c in job.channels if c in ready]
            job._busy_seconds += time.monotonic() - began
            job._running_since = None
            if failure and job.active:
                job.state, job.error = "failed", failure
            elif job.active and not job.missing:
                job.state = "done"
            if not job.active and job.finished is None:
                job.finished = time.monotonic()

    def _asked_for(self, running: RenderJob) -> bool:
        """Tells if a job that was asked for waits on another layer than the running one's
        (one on the same layer wants what the running batch makes: it is let finish)."""
        with self._lock:
            return any(j.active and not j.background
                       and (j.model, j.layer) != (running.model, running.layer)
                       for j in self._jobs.values())


# How often a waiting pre-render looks whether the server has become idle, in seconds.
_IDLE_POLL = 0.5

# Stopped before the interpreter exits: a worker killed inside torch aborts the process.
_open: weakref.WeakSet[Renderer] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for renderer in list(_open):
        renderer.close()


def _lowest_priority() -> None:
    """Puts the calling thread (and the threads it starts, such as torch's workers) at the
    lowest CPU priority, so that searches run first: on Linux a nice value is per thread."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: renders run as they are
        pass


def catalogue_models(session: Context) -> list[str]:
    """Gives the models of the catalogue's feature sets that can be rendered (registered,
    with torch weights), in the order first indexed."""
    names: list[str] = []
    for record in session.store.feature_sets():
        for model in record.feature_set.models:
            registered = session.models.registry.names()
            if model not in names and model in registered and (
                    session.models.registry.get(model).onnx_path is None):
                names.append(model)
    return names


def prerender_plan(session: Context, models: Sequence[str],
                   layers: Callable[[str], Sequence[str]] | None = None
                   ) -> list[tuple[str, str]]:
    """Gives (model, layer) pairs to pre-render: each model's feature layer first, then
    the sweep's layers of each (convolutions spread over the depth)."""
    first, then = [], []
    for model in models:
        spec = session.models.spec(model)
        table = session.models.layer_table(model)
        first.append((model, spec.default_layer))
        chosen = layers(model) if layers else auto_layers(table, feature_layer=spec.default_layer)
        then += [(model, layer) for layer in chosen if layer != spec.default_layer]
    return first + then
