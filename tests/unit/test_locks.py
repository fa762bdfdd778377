"""Named locks (connectors/locks.py), file-backed with a DuckDB warehouse: a process refused the
lock is told who holds it, also when it asks in the moment between the holder taking the lock
and writing its name (five nightly runs of one day started at once met that moment)."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time

import pytest

from trueup.connectors.locks import LockBusy, try_lock


def test_a_refused_process_names_the_holder(tmp_path):
    with try_lock("business day 2026-09-03", home=tmp_path, owner="run abc"):
        with pytest.raises(LockBusy) as refused:
            try_lock("business day 2026-09-03", home=tmp_path, owner="run def")
    assert str(refused.value).startswith("business day 2026-09-03 is held by run abc since ")
    with try_lock("business day 2026-09-03", home=tmp_path, owner="run def"):   # released: free again
        pass


def test_a_process_refused_before_the_holder_wrote_its_name_still_names_it(tmp_path):
    name = "business day 2026-09-03"
    try_lock("warm-up", home=tmp_path, owner="x").release()        # the private locks folder exists
    path = tmp_path / "locks" / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)                                   # taken; its name not written yet

    def write_name_late() -> None:
        time.sleep(0.3)
        os.pwrite(fd, json.dumps({"owner": "run abc", "since": "2026-12-07 23:00:00 UTC"}).encode(), 0)

    writer = threading.Thread(target=write_name_late)
    writer.start()
    try:
        with pytest.raises(LockBusy) as refused:
            try_lock(name, home=tmp_path, owner="run def")
    finally:
        writer.join()
        os.close(fd)
    assert str(refused.value) == f"{name} is held by run abc since 2026-12-07 23:00:00 UTC"
