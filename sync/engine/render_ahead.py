"""Render a push's next resources while the server answers the one before.

A push is bound by the server (tens of milliseconds per PUT against about one of ours),
so the next few resources are rendered on a worker thread while the server handles the
write before (``RENDER_AHEAD``): the server is never kept waiting for our CPU. Only the
pure part runs there (``render_job`` fixes every input on the applying thread).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from mappings.model import FollowUp
from mappings.resource import Rendered, render_resource
from sync.engine.actions import Action, CreateOnServer, UpdateOnServer
from sync.stores.base import CalendarStore, SaysWhenSent

#: Server writes rendered ahead of the one in flight.
RENDER_AHEAD = 4


class RenderAhead:
    """Renders the plan's upcoming server writes on one worker thread, in plan order.

    Only the pure part runs there (the mapper on a document and, for an update, the
    server bytes the action already carries); everything that touches the network, the
    database or the clock stays on the applying thread and is passed in as a value.

    Where the store says when a request has left (``SaysWhenSent``), renders are started
    only then (``server_busy``), so that they run while the server works: started at
    once, a render held the GIL while the applying thread resolved, connected and sent
    the next PUT, which started 0.3 ms late on average (``benchmarks.bench_sync``'s
    phase table, Radicale, N=500). A render not started by the time it is needed is done
    on the applying thread.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        actions: Sequence[Action],
        job: Callable[[Action], Callable[[], Rendered] | None],
        *,
        when_server_busy: bool = False,
    ) -> None:
        self._pool = pool
        self._actions = actions
        self._job = job
        self._futures: dict[int, Future[Rendered]] = {}
        self._next = 0  # the first action not submitted
        self._window = 0  # submit up to (not including) this index
        self._gated = when_server_busy

    def advance(self, index: int) -> None:
        """Action ``index`` is next: keep the following ``RENDER_AHEAD`` ones under way."""
        stale = [key for key in self._futures if key < index]
        for key in stale:
            self._futures.pop(key).cancel()
        self._next = max(self._next, index)
        self._window = min(index + 1 + RENDER_AHEAD, len(self._actions))
        if not self._gated:
            self._fill()

    def server_busy(self) -> None:
        """A request has left: start the renders the window allows (``SaysWhenSent``)."""
        self._fill()

    def _fill(self) -> None:
        while self._next < self._window:
            job = self._job(self._actions[self._next])
            if job is not None:
                self._futures[self._next] = self._pool.submit(job)
            self._next += 1

    def take(self, index: int, action: Action) -> Future[Rendered] | None:
        """The render of action ``index`` if one was started; None: render it now."""
        if index >= len(self._actions) or self._actions[index] is not action:
            return None
        self._next = max(self._next, index + 1)  # never started later for nothing
        return self._futures.pop(index, None)


@contextlib.contextmanager
def rendering_ahead(
    calendar: CalendarStore,
    actions: Sequence[Action],
    job: Callable[[Action], Callable[[], Rendered] | None],
) -> Iterator[RenderAhead]:
    """A ``RenderAhead`` for ``actions``, started by ``calendar``'s requests where it can say."""
    signals = calendar if isinstance(calendar, SaysWhenSent) else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render-ahead") as pool:
        ahead = RenderAhead(pool, actions, job, when_server_busy=signals is not None)
        if signals is not None:
            signals.call_when_sent(ahead.server_busy)
        try:
            yield ahead
        finally:
            if signals is not None:
                signals.call_when_sent(None)


def render_job(
    action: Action,
    clock: Callable[[], dt.datetime],
    schedule_agent: Callable[[FollowUp], str | None],
) -> Callable[[], Rendered] | None:
    """The render of a server write as a call with every input fixed now, or None."""
    if isinstance(action, CreateOnServer):
        base = None
    elif isinstance(action, UpdateOnServer) and action.base_data is not None:
        base = action.base_data
    else:
        return None
    document, stamp, agent = action.document, clock(), schedule_agent(action.document)
    return lambda: render_resource(document, stamp=stamp, base=base, schedule_agent=agent)
