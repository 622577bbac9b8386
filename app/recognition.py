"""The use cases the routes call, and the one decision rule they all share.

``Recognizer`` runs the request flow: upload bytes → face pipeline (decode, detect,
align, quality; in the detection threads) → micro-batcher → model → gallery index →
``MatchPolicy`` (calibrated threshold, unknown, low quality). Routes only translate HTTP
to these calls and the results to response schemas.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, ParamSpec, TypeVar

import numpy as np

from app.domain_errors import (
    DomainError,
    FaceNotInPhoto,
    LowQuality,
    NoFace,
    StorageUnavailable,
    UnknownIdentity,
)
from app.gallery.search.index import GalleryIndex
from app.gallery.service import Enrollment, GalleryService, NewFace
from app.gallery.storage import DEFAULT_COLLECTION, content_hash
from app.inference.batcher import MicroBatcher
from app.metrics import Metrics
from app.settings import Settings
from faces import AlignedFace, FacePipeline, ImageError
from faces.model_contract import Aggregation, Calibration, ModelCard
from faces.open_set import threshold_for_fpir

Candidates = list[tuple[str, float]]

P = ParamSpec("P")
T = TypeVar("T")

#: The similarity (``MatchPolicy.similarity``) that the threshold in force maps to.
SIMILARITY_AT_THRESHOLD = 0.6
#: A ``box`` chosen for enrolment names the detected face it overlaps by at least this
#: intersection-over-union (a box copied from ``/identify``'s answer overlaps its face by
#: 1.0; two faces of one photo rarely overlap by more than 0.3).
MIN_BOX_IOU = 0.5
#: Identities an enrolled face is compared with, for the lookalike warning.
_LOOKALIKE_TOP_K = 5


@dataclass(frozen=True)
class FaceChoice:
    """Which face of a photo to enrol: the ``index``-th as ``/identify`` lists them
    (largest first), or the one whose box overlaps ``box`` (x1, y1, x2, y2) best; neither:
    the largest."""

    index: int | None = None
    box: tuple[float, float, float, float] | None = None

    def pick(self, faces: list[AlignedFace]) -> AlignedFace:
        """The chosen face (``FaceNotInPhoto`` when there is no such face)."""
        if self.index is not None:
            if self.index >= len(faces):
                raise FaceNotInPhoto(
                    f"The photo has {len(faces)} faces; face_index {self.index} is not one "
                    "of them (faces are numbered from 0, largest first, as /identify lists "
                    "them). Nothing was enrolled."
                )
            return faces[self.index]
        if self.box is not None:
            overlaps = [_iou(self.box, tuple(float(v) for v in f.box)) for f in faces]
            best = int(np.argmax(overlaps)) if overlaps else -1
            if best < 0 or overlaps[best] < MIN_BOX_IOU:
                raise FaceNotInPhoto(
                    f"No detected face overlaps the box {list(self.box)} (the best overlap "
                    f"is {max(overlaps, default=0.0):.2f}, at least {MIN_BOX_IOU} is needed); "
                    "copy a face's box from /identify. Nothing was enrolled."
                )
            return faces[best]
        return faces[0]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Lookalike:
    """An enrolled face that already matched another identity above the threshold."""

    photo: int
    face_id: str
    identity: str
    score: float
    threshold: float


@dataclass(frozen=True)
class ThresholdInForce:
    """The identification threshold and where it comes from."""

    value: float
    source: str  # "calibrated", "deployment", "setting", "request", "card"
    target_fpir: float | None
    identities: int
    faces: int


@dataclass(frozen=True)
class EnrollWarning:
    """Something an operator should know about a face that was enrolled all the same."""

    code: Literal["low_quality", "matches_other_identity"]
    message: str


@dataclass(frozen=True)
class Decision:
    """What the rule says about one probe face."""

    identity: str | None
    score: float | None
    reason: str | None  # None (named), "below_threshold", "low_quality", "empty_gallery"


class MatchPolicy:
    """The decision rule: a calibrated open-set threshold and the quality floors.

    Without an override, the threshold holds ``target_fpir`` (the share of strangers named
    as someone) for the gallery's current size, from the model card's impostor tail
    (``faces.open_set``); it is recomputed only when the gallery's size changes.
    ``FACEID_THRESHOLD`` (``settings.threshold``) and a request's ``threshold`` override it.
    """

    def __init__(self, card: ModelCard, settings: Settings) -> None:
        self.card = card
        self.target_fpir = settings.target_fpir
        self.fixed = settings.threshold
        self.probe_quality_floor = settings.probe_quality_floor
        self.enroll_quality_floor = settings.enroll_quality_floor
        self.enroll_quality_warning = settings.enroll_quality_warning
        self._calibrated = lru_cache(maxsize=64)(self._calibrated_threshold)
        #: With FACEID_CALIBRATION=deployment: a collection's own fitted tail, or None
        #: while it has too few people (``app.calibration_monitor`` sets this).
        self.deployment: Callable[[str], Calibration | None] | None = None

    def _calibrated_threshold(self, identities: int, faces: int) -> float:
        assert self.card.calibration is not None
        per_identity = faces / identities if identities else 1.0
        return threshold_for_fpir(self.card.calibration, self.target_fpir, identities, per_identity)

    def threshold(
        self,
        identities: int,
        faces: int,
        override: float | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> ThresholdInForce:
        """The threshold for a gallery of this size (``override``: a request's own)."""
        if override is not None:
            return ThresholdInForce(override, "request", None, identities, faces)
        if self.fixed is not None:
            return ThresholdInForce(self.fixed, "setting", None, identities, faces)
        own = self.deployment(collection) if self.deployment is not None else None
        if own is not None:
            per_identity = faces / identities if identities else 1.0
            value = threshold_for_fpir(own, self.target_fpir, identities, per_identity)
            return ThresholdInForce(value, "deployment", self.target_fpir, identities, faces)
        return self.card_threshold(identities, faces)

    def card_threshold(self, identities: int, faces: int) -> ThresholdInForce:
        """The threshold the model card (or FACEID_THRESHOLD) gives a gallery of this
        size: what the calibration check on the enrolled people tests."""
        if self.fixed is not None:
            return ThresholdInForce(self.fixed, "setting", None, identities, faces)
        if self.card.calibration is None:  # an older card: its pair threshold
            return ThresholdInForce(self.card.threshold, "card", None, identities, faces)
        value = self._calibrated(identities, faces)
        return ThresholdInForce(value, "calibrated", self.target_fpir, identities, faces)

    @property
    def aggregation(self) -> Aggregation:
        """How ``search`` scores an identity: by centroid, or by its best face."""
        calibration = self.card.calibration
        if calibration is not None and calibration.aggregation == "centroid":
            return "centroid"
        return "max"

    def search(self, index: GalleryIndex, queries: np.ndarray, top_k: int) -> list[Candidates]:
        """The best ``top_k`` identities per query, scored the way the card's calibration
        was measured: by identity centroid, or by best face."""
        calibration = self.card.calibration
        if calibration is not None and calibration.aggregation == "centroid":
            return index.search_centroids(queries, top_k)
        return index.search(queries, top_k)

    @property
    def verify_threshold(self) -> float:
        """One-to-one comparisons: the card's pair threshold unless overridden."""
        return self.fixed if self.fixed is not None else self.card.threshold

    def enrollable(self, faces: list[AlignedFace], choice: FaceChoice | None = None) -> AlignedFace:
        """The face of a photo that enrolment stores: the largest (or the one ``choice``
        names), if it passes the enrolment quality floor (``NoFace`` / ``FaceNotInPhoto``
        / ``LowQuality`` otherwise). The HTTP route and ``python -m app.gallery`` share
        this rule."""
        if not faces:
            raise NoFace("No face was found in the photo; nothing was enrolled.")
        face = (choice or FaceChoice()).pick(faces)
        floor = self.enroll_quality_floor
        if face.quality.score < floor:
            raise LowQuality(
                f"The face's quality is {face.quality.score:.2f}, under the enrolment floor "
                f"{floor:.2f}: {face.quality.explain(floor)}. Nothing was enrolled.",
            )
        return face

    @property
    def quality_bar(self) -> float:
        """The quality an enrolled face should reach today: the refusal floor or, when
        higher, the warning level (what the gallery audit holds enrolled faces to)."""
        return max(self.enroll_quality_floor, self.enroll_quality_warning)

    def enrollment_warnings(self, face: AlignedFace) -> list[EnrollWarning]:
        """Warnings for a face that passed the floor: ``low_quality`` when its quality
        is under ``enroll_quality_warning``. Such faces are still recognised most of the
        time, and refusing one keeps its person out of the gallery altogether, which
        costs more than it saves (docs/MODEL.md, "Face quality")."""
        level = self.enroll_quality_warning
        score = face.quality.score
        if score >= level:
            return []
        return [
            EnrollWarning(
                "low_quality",
                f"The face's quality is {score:.2f}, under {level:.2f}: "
                f"{face.quality.explain(level)}. It was enrolled; a sharper, larger or more "
                "frontal photo of this person, enrolled as well, would make later "
                "identification more reliable.",
            )
        ]

    @staticmethod
    def similarity(score: float, threshold: float) -> float:
        """A cosine ``score`` as a similarity in [0, 1] for tools that threshold a
        percentage (the CompreFace and DeepStack dialects): monotone in the cosine, and
        anchored so that the threshold in force maps to ``SIMILARITY_AT_THRESHOLD`` (0.6,
        Double Take's default match bar). Linear from -1 → 0 up to the threshold, and from
        the threshold to 1 → 1. A score under the threshold always maps under the anchor
        (even after rounding to 5 decimals), so a tool set at 60 % names exactly whom the
        service names."""
        anchor = SIMILARITY_AT_THRESHOLD
        t = min(max(threshold, -0.999999), 0.999999)
        if score >= t:
            value = anchor + (1.0 - anchor) * (min(score, 1.0) - t) / (1.0 - t)
            return round(min(value, 1.0), 5)
        value = anchor * (max(score, -1.0) + 1.0) / (t + 1.0)
        return min(round(value, 5), anchor - 1e-5)

    @staticmethod
    def pair_score(a: np.ndarray, b: np.ndarray) -> float:
        """The cosine of two L2-normalised embeddings (one-to-one comparisons)."""
        score = float(np.dot(a, b))
        if not math.isfinite(score):
            raise RuntimeError("the model returned a non-finite embedding")
        return score

    def decide(self, face: AlignedFace, candidates: Candidates, threshold: float) -> Decision:
        """Named, unknown or refused for low quality: never a guess under the floor."""
        best = candidates[0] if candidates else None
        score = best[1] if best else None
        if face.quality.score < self.probe_quality_floor:
            return Decision(None, score, "low_quality")
        if best is None:
            return Decision(None, None, "empty_gallery")
        if best[1] < threshold:
            return Decision(None, score, "below_threshold")
        return Decision(best[0], score, None)


@dataclass(frozen=True)
class IdentifiedFace:
    face: AlignedFace
    decision: Decision
    candidates: Candidates
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class Identification:
    faces: list[IdentifiedFace]
    threshold: ThresholdInForce


@dataclass(frozen=True)
class EmbeddedFace:
    face: AlignedFace
    embedding: np.ndarray


@dataclass(frozen=True)
class Verification:
    same_person: bool
    score: float
    threshold: float
    faces: tuple[AlignedFace, AlignedFace]


@dataclass(frozen=True)
class EnrolledFace:
    enrollment: Enrollment
    face: AlignedFace
    faces_detected: int


@dataclass(frozen=True)
class EnrolOutcome:
    """What an enrolment request did: one outcome per photo, and the warnings."""

    photos: list[PhotoOutcome]
    lookalikes: list[Lookalike]


@dataclass(frozen=True)
class PhotoOutcome:
    """What became of one photo of an enrolment request: enrolled, or refused (the error
    it would have been answered with on its own: no_face, low_quality, invalid_image…)."""

    enrolled: EnrolledFace | None
    error: DomainError | ImageError | None

    @staticmethod
    def refused(exc: DomainError | ImageError) -> PhotoOutcome:
        return PhotoOutcome(None, exc)


class Recognizer:
    """Detect-and-embed, identify, verify and enrol: the service's use cases."""

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        pipeline: FacePipeline,
        batcher: MicroBatcher,
        gallery: GalleryService,
        policy: MatchPolicy,
        detect_pool: Executor,
        db_pool: Executor | None = None,
        search_pool: Executor | None = None,
        db_wait_s: float | None = None,
        db_call_s: float = 0.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pipeline = pipeline
        self.batcher = batcher
        self.gallery = gallery
        self.policy = policy
        self._detect_pool = detect_pool
        self._db_pool = db_pool
        self._search_pool = search_pool
        self._db_wait_s = db_wait_s
        self._db_call_s = db_call_s
        self._dim = policy.card.embedding_dim
        self.detecting = 0  # uploads in decode/detect/align now (the batcher asks)

    @property
    def model_version(self) -> str:
        return self.policy.card.version

    # ------------------------------------------------------------------ parts
    async def run_db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` — a gallery call that may reach the database — in the
        database threads (``FACEID_DB_WORKERS``, never those identification searches in),
        answered within ``db_wait_s`` (queueing included) or StorageUnavailable (503). The
        routes call every gallery read and write through this, never ``asyncio.to_thread``.

        A call that once started may take up to ``db_call_s`` (its own bounds) does not start
        when less than that is left of ``db_wait_s`` (it queued too long): a call the caller
        gave up on before it started never runs later behind its back."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        if self._db_wait_s is None:
            return await loop.run_in_executor(self._db_pool, call)
        latest_start = time.monotonic() + self._db_wait_s - self._db_call_s

        def job() -> T:
            if time.monotonic() > latest_start:
                raise StorageUnavailable("The gallery database calls queued for too long.")
            return call()

        try:
            return await asyncio.wait_for(loop.run_in_executor(self._db_pool, job), self._db_wait_s)
        except TimeoutError:
            self.gallery.storage_failed()
            raise StorageUnavailable(
                f"The gallery database did not answer within {self._db_wait_s:g} s."
            ) from None

    def _faces_blocking(self, data: bytes, max_faces: int | None) -> list[AlignedFace]:
        t0 = time.perf_counter()
        faces = self.pipeline.faces_in_bytes(data, max_faces=max_faces)
        self.metrics.detect_seconds.observe(time.perf_counter() - t0)
        return faces

    async def find_faces(self, data: bytes, route: str, max_faces: int | None) -> list[AlignedFace]:
        """Decode, detect, align and assess in the detection threads (raises ImageError)."""
        loop = asyncio.get_running_loop()
        self.detecting += 1  # event-loop thread only: no lock needed
        try:
            faces = await loop.run_in_executor(
                self._detect_pool, self._faces_blocking, data, max_faces
            )
        finally:
            self.detecting -= 1
        self.metrics.faces_per_request.labels(route).observe(len(faces))
        return faces

    async def embed(self, faces: list[AlignedFace]) -> np.ndarray:
        """Embeddings (float32 N×D) of aligned faces, through the micro-batcher."""
        if not faces:
            return np.zeros((0, self._dim), dtype=np.float32)
        return await self.batcher.embed(np.stack([f.crop for f in faces]))

    # -------------------------------------------------------------- use cases
    async def detect_and_embed(self, data: bytes, max_faces: int | None) -> list[EmbeddedFace]:
        """Every face of a photo, largest first, with its embedding."""
        faces = await self.find_faces(data, "/embed", max_faces or self.settings.max_faces)
        embeddings = await self.embed(faces)
        return [EmbeddedFace(f, e) for f, e in zip(faces, embeddings, strict=True)]

    def threshold(
        self, override: float | None = None, collection: str = DEFAULT_COLLECTION
    ) -> ThresholdInForce:
        """The identification threshold in force for a collection as it is now (each
        collection's is calibrated for its own size)."""
        identities, faces = self.gallery.size(collection)
        return self.policy.threshold(identities, faces, override, collection)

    async def identify(
        self,
        data: bytes,
        top_k: int,
        threshold: float | None,
        max_faces: int | None,
        collection: str = DEFAULT_COLLECTION,
    ) -> Identification:
        """Who is each face of the photo, in ``collection``: named, unknown, or refused
        for low quality."""
        faces = await self.find_faces(data, "/identify", max_faces or self.settings.max_faces)
        return await self.identify_faces(faces, top_k, threshold, collection)

    async def identify_faces(
        self,
        faces: list[AlignedFace],
        top_k: int,
        threshold: float | None,
        collection: str = DEFAULT_COLLECTION,
    ) -> Identification:
        """``identify`` for faces already found (the dialects filter them first)."""
        if not faces:
            return Identification([], self.threshold(threshold, collection))
        embeddings = await self.embed(faces)
        index = self.gallery.index_of(collection)
        matches = await asyncio.get_running_loop().run_in_executor(
            self._search_pool, self.policy.search, index, embeddings, top_k
        )
        in_force = self.threshold(threshold, collection)
        return Identification(
            [
                IdentifiedFace(
                    face,
                    self.policy.decide(face, candidates, in_force.value),
                    candidates,
                    embedding,
                )
                for face, candidates, embedding in zip(faces, matches, embeddings, strict=True)
            ],
            in_force,
        )

    async def verify(self, data_a: bytes, data_b: bytes) -> Verification:
        """Compare the largest faces of two photos (``NoFace`` when one has none)."""
        faces_a, faces_b = await asyncio.gather(
            self.find_faces(data_a, "/verify", 1), self.find_faces(data_b, "/verify", 1)
        )
        for field, faces in (("image_a", faces_a), ("image_b", faces_b)):
            if not faces:
                raise NoFace(f"No face was found in '{field}'.")
        embeddings = await self.embed([faces_a[0], faces_b[0]])
        score = self.policy.pair_score(embeddings[0], embeddings[1])
        threshold = self.policy.verify_threshold
        return Verification(score >= threshold, score, threshold, (faces_a[0], faces_b[0]))

    async def _enrollable_in(
        self, data: bytes, choice: FaceChoice | None = None
    ) -> tuple[AlignedFace, int]:
        faces = await self.find_faces(data, "/identities/{identity}/faces", None)
        return self.policy.enrollable(faces, choice), len(faces)

    async def enroll_faces(
        self,
        identity: str,
        faces: list[tuple[AlignedFace, bytes]],
        collection: str = DEFAULT_COLLECTION,
    ) -> list[Enrollment]:
        """Store faces already found and judged enrollable (each with the bytes of its
        photo, for the content hash) under ``identity``, in one transaction: embedded
        through the batcher, with their sealed crops when crops are kept."""
        embeddings = await self.embed([face for face, _ in faces])
        return await self._store(identity, faces, embeddings, collection)

    async def _store(
        self,
        identity: str,
        faces: list[tuple[AlignedFace, bytes]],
        embeddings: np.ndarray,
        collection: str,
    ) -> list[Enrollment]:
        new_faces = [
            NewFace(
                identity,
                embedding,
                content_hash(data),
                face.crop,
                collection,
                quality=face.quality.score,
            )
            for (face, data), embedding in zip(faces, embeddings, strict=True)
        ]
        return await self.run_db(self.gallery.enroll_many, new_faces)

    async def lookalikes(
        self, identity: str, embeddings: np.ndarray, collection: str = DEFAULT_COLLECTION
    ) -> list[tuple[int, str, float, float]]:
        """For each embedding that matches an identity other than ``identity`` at or
        above the threshold in force: (its position, that identity, score, threshold)."""
        if not len(embeddings):
            return []
        index = self.gallery.index_of(collection)
        matches = await asyncio.get_running_loop().run_in_executor(
            self._search_pool, self.policy.search, index, embeddings, _LOOKALIKE_TOP_K
        )
        threshold = self.threshold(None, collection).value
        found = []
        for i, candidates in enumerate(matches):
            other = next(((n, sc) for n, sc in candidates if n != identity), None)
            if other is not None and other[1] >= threshold:
                found.append((i, other[0], float(other[1]), threshold))
        return found

    async def enroll_photos(
        self,
        identity: str,
        photos: list[bytes],
        collection: str = DEFAULT_COLLECTION,
        choice: FaceChoice | None = None,
    ) -> list[PhotoOutcome]:
        """``enroll_chosen`` without its warnings."""
        return (await self.enroll_chosen(identity, photos, collection, choice)).photos

    async def enroll_chosen(
        self,
        identity: str,
        photos: list[bytes],
        collection: str = DEFAULT_COLLECTION,
        choice: FaceChoice | None = None,
        replaces: str | None = None,
    ) -> EnrolOutcome:
        """Enrol the largest face (or the one ``choice`` names) of each photo under
        ``identity`` in ``collection``: one outcome per photo, in order. The faces that
        pass are stored in one transaction (StorageUnavailable: none was stored); each
        keeps its photo's content hash and, with a crop vault, its sealed aligned crop.
        A face that already matches another identity above the threshold in force is
        enrolled all the same, with a warning (``lookalikes``). ``replaces`` (one photo):
        the face of ``identity`` that the new one takes the place of, in the same
        transaction (``UnknownIdentity`` when there is no such face; nothing is stored)."""
        found = await asyncio.gather(
            *(self._enrollable_in(data, choice) for data in photos), return_exceptions=True
        )
        outcomes: list[PhotoOutcome | None] = []
        accepted: list[tuple[int, AlignedFace, int]] = []
        for i, result in enumerate(found):
            if isinstance(result, DomainError | ImageError):
                outcomes.append(PhotoOutcome.refused(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                outcomes.append(None)
                accepted.append((i, *result))
        lookalikes: list[Lookalike] = []
        if accepted:
            pairs = [(face, photos[i]) for i, face, _ in accepted]
            embeddings = await self.embed([face for face, _ in pairs])
            similar = await self.lookalikes(identity, embeddings, collection)
            if replaces is None:
                enrolled = await self._store(identity, pairs, embeddings, collection)
            else:
                (face, data), embedding = pairs[0], embeddings[0]
                new = NewFace(
                    identity,
                    embedding,
                    content_hash(data),
                    face.crop,
                    collection,
                    quality=face.quality.score,
                )
                swapped = await self.run_db(self.gallery.replace_face, replaces, new)
                if swapped is None:
                    raise UnknownIdentity(
                        f"Identity {identity!r} has no face with id {replaces!r}; nothing "
                        "was enrolled."
                    )
                enrolled = [swapped]
            for (i, face, detected), enrollment in zip(accepted, enrolled, strict=True):
                outcomes[i] = PhotoOutcome(EnrolledFace(enrollment, face, detected), None)
            lookalikes = [
                Lookalike(accepted[j][0], enrolled[j].face_id, other, score, threshold)
                for j, other, score, threshold in similar
            ]
        return EnrolOutcome([o for o in outcomes if o is not None], lookalikes)
