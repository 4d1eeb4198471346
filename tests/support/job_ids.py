"""Job ids made for a chosen moment, as jobq's UUIDv7 ids carry the moment they were made:
a test puts jobs into the day (and so the partition of jobs, V24) it needs."""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from jobq.domain.history import job_id_floor


def uuid7_at(moment: datetime) -> uuid.UUID:
    """A UUIDv7 of `moment` (a job id made that millisecond), its other bits random."""
    ms = job_id_floor(moment).int >> 80
    rand = int.from_bytes(os.urandom(10), "big")
    return uuid.UUID(
        int=ms << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)
    )
