"""Prometheus metrics of one service instance (its own registry, served on /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_FACE_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


class Metrics:
    """Request, face, model and gallery metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "faceid_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "faceid_http_request_duration_seconds",
            "HTTP request latency, by route template, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.faces_per_request = Histogram(
            "faceid_faces_per_request",
            "Faces detected per uploaded photo, by route.",
            ["route"],
            buckets=_FACE_BUCKETS,
            registry=r,
        )
        self.detect_seconds = Histogram(
            "faceid_detect_seconds",
            "Decode + detect + align time per photo.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "faceid_model_batch_size",
            "Faces per model call (micro-batch size).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "faceid_model_batch_requests",
            "Distinct requests whose faces shared one model call.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "faceid_model_inference_seconds",
            "Wall time of one model call.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Totals over every collection: a label per collection would let clients grow
        # the metric's cardinality without bound (GET /collections has the sizes).
        self.gallery_faces = Gauge(
            "faceid_gallery_faces", "Enrolled faces, in every collection.", registry=r
        )
        self.gallery_identities = Gauge(
            "faceid_gallery_identities", "Enrolled identities, in every collection.", registry=r
        )
        self.gallery_collections = Gauge(
            "faceid_gallery_collections", "Collections that hold a face.", registry=r
        )
        self.ready = Gauge("faceid_ready", "1 once the model is loaded and warm.", registry=r)
        # The calibration check on the enrolled people (default collection; /health).
        self.population_status = Gauge(
            "faceid_population_check_status",
            "1 for the calibration check's current status on the default collection's "
            "enrolled people (ok, too_few_identities, heavier_than_card), 0 for the others.",
            ["status"],
            registry=r,
        )
        self.population_fpir = Gauge(
            "faceid_population_fpir",
            "FPIR the threshold in force gives on the enrolled people (leave-one-identity-"
            "out), with its 95 % interval: bound estimate, low or high; NaN until computed.",
            ["bound"],
            registry=r,
        )
        self.target_fpir = Gauge(
            "faceid_target_fpir", "FACEID_TARGET_FPIR, for comparison.", registry=r
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def observe_batch(self, faces: int, requests: int, seconds: float) -> None:
        self.batch_size.observe(faces)
        self.batch_requests.observe(requests)
        self.inference_seconds.observe(seconds)

    def track_gallery(
        self,
        faces: Callable[[], float],
        identities: Callable[[], float],
        collections: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.gallery_faces.set_function(faces)
        self.gallery_identities.set_function(identities)
        self.gallery_collections.set_function(collections)

    def track_population(self, check: Callable[[], object | None]) -> None:
        """Read the calibration check's result (``PopulationCheck`` or None) at scrape."""

        def status(name: str) -> Callable[[], float]:
            return lambda: float(getattr(check(), "status", None) == name)

        def bound(field: str) -> Callable[[], float]:
            def read() -> float:
                value = getattr(check(), field, None)
                return float("nan") if value is None else float(value)

            return read

        for name in ("ok", "too_few_identities", "heavier_than_card"):
            self.population_status.labels(name).set_function(status(name))
        for label, field in (("estimate", "fpir"), ("low", "fpir_low"), ("high", "fpir_high")):
            self.population_fpir.labels(label).set_function(bound(field))
