"""Keeps the calibration check on the enrolled people current, off the request path.

A background thread looks at the gallery every few seconds; when a collection changed
(its size or the change log moved) and at least ``FACEID_CALIBRATION_CHECK_INTERVAL_S``
passed since its last check, it re-runs ``app.gallery.calibration_check`` on a snapshot of
that collection's index. ``/health`` and the metrics read the last result; ``/identify``
never waits for it. With ``FACEID_CALIBRATION=deployment`` it also keeps each collection's
own fitted tail, which ``MatchPolicy`` then uses for that collection's threshold.

A result turning ``heavier_than_card`` is logged as a warning (once per change of status).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from app.gallery.calibration_check import (
    PopulationCheck,
    best_stranger_scores,
    check,
    deployment_calibration,
)
from app.gallery.population import Population
from app.gallery.service import GalleryService
from app.gallery.storage import DEFAULT_COLLECTION
from app.recognition import MatchPolicy
from faces.model_contract import Calibration

log = logging.getLogger("faceid.calibration")

_POLL_S = 2.0


@dataclass(frozen=True)
class CheckResult:
    """The last check of one collection and the gallery state it was computed on."""

    check: PopulationCheck
    calibration: Calibration | None
    change_seq: int
    computed_at: float  # time.time()
    seconds: float


class CalibrationMonitor:
    """Per collection: the last ``PopulationCheck`` and (deployment mode) fitted tail."""

    def __init__(
        self,
        gallery: GalleryService,
        policy: MatchPolicy,
        interval_s: float,
        deployment: bool = False,
    ) -> None:
        self.gallery = gallery
        self.policy = policy
        self.interval_s = interval_s
        self.deployment = deployment
        self._results: dict[str, CheckResult] = {}
        self._signature: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if deployment:
            policy.deployment = self.calibration

    # ---------------------------------------------------------------- reads
    def result(self, collection: str = DEFAULT_COLLECTION) -> CheckResult | None:
        """The last check of ``collection`` (None: not computed yet)."""
        return self._results.get(collection)

    def calibration(self, collection: str) -> Calibration | None:
        """``collection``'s own fitted tail (deployment mode, enough people) or None."""
        found = self._results.get(collection)
        return found.calibration if found is not None else None

    # -------------------------------------------------------------- compute
    def refresh(self, collection: str = DEFAULT_COLLECTION) -> CheckResult:
        """Check ``collection`` now (the background thread and tests call this)."""
        with self._lock:
            t0 = time.perf_counter()
            seq = self.gallery.change_seq
            index = self.gallery.index_of(collection)
            population = Population.of(*index.snapshot())
            in_force = self.policy.card_threshold(population.identities, population.faces)
            aggregation = self.policy.aggregation
            target = self.policy.target_fpir
            best = best_stranger_scores(population, aggregation)
            found = check(population, in_force.value, target, aggregation, best)
            fitted = None
            if self.deployment:
                fitted = deployment_calibration(
                    population,
                    aggregation,
                    target,
                    f"this deployment's collection {collection!r}: {population.identities} "
                    f"identities, {population.faces} faces",
                )
            before = self._results.get(collection)
            result = CheckResult(found, fitted, seq, time.time(), time.perf_counter() - t0)
            self._results[collection] = result
            self._signature[collection] = (population.identities, population.faces, seq)
        if found.warn and (before is None or not before.check.warn):
            log.warning(
                "the enrolled people's impostor tail is heavier than the model card's: the "
                "threshold in force names more strangers than FACEID_TARGET_FPIR promises",
                extra={
                    "collection": collection,
                    "fpir_estimate": found.fpir,
                    "fpir_low": found.fpir_low,
                    "fpir_high": found.fpir_high,
                    "target_fpir": found.target_fpir,
                    "identities": found.identities,
                },
            )
        return result

    def due(self) -> list[str]:
        """Collections whose gallery changed since their last check and whose last check
        is at least ``interval_s`` old."""
        now, seq = time.time(), self.gallery.change_seq
        out = []
        for size in self.gallery.collection_sizes():
            signature = (size.identities, size.faces, seq)
            last = self._results.get(size.name)
            if last is None or (
                self._signature.get(size.name) != signature
                and now - last.computed_at >= self.interval_s
            ):
                out.append(size.name)
        return out

    # ------------------------------------------------------------ background
    def start(self) -> None:
        """Check every due collection in a background thread until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="faceid-calibration-check", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for collection in self.due():
                    if self._stop.is_set():
                        break
                    self.refresh(collection)
            except Exception:  # never let the checker die: the next round retries
                log.exception("calibration check failed")
            self._stop.wait(_POLL_S)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
