"""Whether PostgreSQL copies job events into the outbox (db/migrations/V15), and who says so.

A replica with kafka.enabled turns capture on when it starts, before it serves: from then on
every committed event waits in the outbox until a publisher has it acknowledged. Nothing else
turns it on, so an installation that never enabled Kafka pays nothing per event.

Turning it off must not lose events a publisher would have sent: a replica without Kafka turns
it off only after no replica has held the publisher's lease for `IDLE_OFF_S` (Kafka turned
off everywhere, not one replica restarting), checking every `CHECK_INTERVAL_S`. What waits in
the outbox then stays there for the day Kafka is turned on again; nothing is deleted.
"""

from __future__ import annotations

from jobq.domain.errors import Unavailable
from jobq.observability.logging_setup import get_logger
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import EventOutboxStore

log = get_logger("jobq.events")

IDLE_OFF_S = 600.0
CHECK_INTERVAL_S = 60.0
CAPTURE_ATTEMPTS = 15
"""Tries to switch capture on at start, each waiting up to the store's lock timeout (2 s)."""


async def capture_on(outbox: EventOutboxStore, attempts: int = CAPTURE_ATTEMPTS) -> None:
    """Start capturing events (a replica with Kafka enabled, at start). The switch waits for
    job_events' lock a few seconds at a time (the store's lock_timeout), so a long transaction
    delays a first start with Kafka rather than queueing every writer behind the switch; after
    `attempts` tries the start fails, saying why."""
    for attempt in range(1, attempts + 1):
        try:
            changed = await outbox.capture_set(True)
        except Unavailable as exc:
            if attempt == attempts:
                raise Unavailable(f"{exc}: cannot start publishing kafka events") from None
            log.warning(
                "waiting to switch event capture on", action="events.capture_wait", error=str(exc)
            )
            continue
        if changed:
            log.info("job events are captured for kafka from now on", action="events.capture_on")
        return


class CaptureSwitch:
    """On a replica without Kafka: turns capture off once no replica has published for
    IDLE_OFF_S."""

    def __init__(self, outbox: EventOutboxStore, *, interval_s: float = CHECK_INTERVAL_S) -> None:
        self._outbox = outbox
        self.loop = ServiceLoop("event-capture", interval_s, self.run_once, max_retry_s=600.0)

    async def run_once(self) -> bool:
        """True when this run turned capture off."""
        if not await self._outbox.capture_on():
            return False
        lag = await self._outbox.outbox_lag()
        if lag.owner is not None or lag.idle_s < IDLE_OFF_S:
            return False
        try:
            if not await self._outbox.capture_set(False):
                return False
        except Unavailable as exc:  # a long transaction: the next check tries again
            log.info("event capture stays on for now", action="events.capture_wait", error=str(exc))
            return False
        log.warning(
            "no replica has published kafka events for 10 minutes: capture is off; "
            "events that wait stay in the outbox until kafka is enabled again",
            action="events.capture_off",
            waiting=lag.events,
        )
        return True
