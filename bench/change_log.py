"""The change log stays bounded (issue 24): a million enrol/erase operations on one
gallery, followed by two processes' worth of ``GalleryService`` (each with its own
connection and its real background follower, as ``python -m app`` runs it), and a third
follower that is stopped early and comes back after the others pruned past it.

Every round enrols ``--batch`` faces in one transaction and erases them in another (each
face is one ``add`` and one ``remove`` row of the log: 2 × batch operations per round).
The writer and the live follower run ``start_sync`` (report their seq every 5 s; the log is
pruned to what every live follower applied, ``FACEID_CHANGE_LOG_TTL_S`` set to ``--ttl``).
The stopped follower reports once and is then left alone for the whole run; it is past the
TTL by the end, and its ``sync()`` must reload the gallery (one resnapshot) and agree with
the writer. Reports the largest and final size of ``changes``, sampled every second.

    python -m bench.change_log                    # 1,000,000 operations on SQLite
    python -m bench.change_log --operations 20000 --ttl 10   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from app.gallery.service import GalleryService, NewFace
from app.gallery.storage import open_storage

DIM = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="faces per transaction")
    parser.add_argument("--ttl", type=float, default=30.0, help="FACEID_CHANGE_LOG_TTL_S")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (default: SQLite)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="faceid-changelog-"))

    def opened() -> GalleryService:
        store = open_storage(args.database_url, tmp / "gallery.sqlite3", "bench/1", DIM)
        service = GalleryService.open(store)
        service.follower_ttl_s = args.ttl
        return service

    writer, live, stopped = opened(), opened(), opened()
    for service in (writer, live):
        service.start_sync(poll_s=0.25)
    time.sleep(1.0)  # both have reported (a first round reports at once)
    writer.enroll("anchor", _unit(np.random.default_rng(0).standard_normal(DIM)))
    stopped.sync()
    stopped.maintain()  # reports once, then is "stopped" for the whole run

    sizes: list[tuple[float, int]] = []  # (seconds since the stopped follower's report, rows)
    done = threading.Event()
    reported = time.monotonic()

    def sample() -> None:
        while not done.wait(1.0):
            sizes.append((time.monotonic() - reported, writer.store.change_log_size()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    operations = 0
    while operations < args.operations:
        faces = [
            NewFace(f"p{i % 97}", _unit(v))
            for i, v in enumerate(rng.standard_normal((args.batch, DIM)))
        ]
        enrolled = writer.enroll_many(faces)
        writer.delete_faces([e.face_id for e in enrolled])
        operations += 2 * len(enrolled)
    elapsed = time.perf_counter() - t0
    time.sleep(max(args.ttl - elapsed, 0) + 6.0)  # the stopped follower is now past the TTL
    done.set()
    sampler.join()
    sizes.append((time.monotonic() - reported, writer.store.change_log_size()))
    floor = writer.store.change_floor()
    last = writer.change_seq
    applied_before = stopped.change_seq
    stopped.sync()
    agree = stopped.index.face_ids() == writer.index.face_ids() == live.index.face_ids()
    print(f"database: {writer.store.engine}; {operations:,} operations in {elapsed:.0f} s")
    held = max(n for t, n in sizes if t <= args.ttl)
    after = max((n for t, n in sizes if t > args.ttl + 5.0), default=0)
    print(
        f"changes rows (sampled every 1 s): max {held:,} while the stopped follower was live "
        f"(its first {args.ttl:g} s), max {after:,} after, final {sizes[-1][1]:,}"
    )
    print(f"last seq {last:,}, pruned floor {floor:,}")
    print(
        f"resnapshots of the writer and the live follower: {writer.resnapshots + live.resnapshots}"
    )
    print(
        f"stopped follower: was at seq {applied_before:,}; resnapshots {stopped.resnapshots}, "
        f"now at {stopped.change_seq:,}; indexes agree: {agree}"
    )
    for service in (writer, live, stopped):
        service.close()


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


if __name__ == "__main__":
    main()
