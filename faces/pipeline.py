"""The face pipeline as one object: bytes or pixels in, aligned 112×112 crops out,
each with its quality (``faces.quality``).

Training (``training.data``) and serving (``app.api``) both call ``FacePipeline``; there
is no second implementation, which is what makes served embeddings match training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faces.align import ALIGNED_SIZE, align_face
from faces.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from faces.detect import (
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_MIN_SCORE,
    DetectedFace,
    FaceDetector,
)
from faces.quality import FaceQuality, assess_quality

# Bump whenever decode/detect/align change in a way that alters crops; the service
# refuses a model whose card names another version.
PREPROCESSING_VERSION = "mtcnn-1.0.0+arcface112-v1"


@dataclass(frozen=True)
class AlignedFace:
    """A detected face with its aligned crop (112×112×3 uint8, RGB) and its quality."""

    detection: DetectedFace
    crop: np.ndarray
    quality: FaceQuality = field(init=False)

    def __post_init__(self) -> None:
        quality = assess_quality(self.crop, self.detection.landmarks, self.detection.score)
        object.__setattr__(self, "quality", quality)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.detection.box

    @property
    def score(self) -> float:
        return self.detection.score

    @property
    def landmarks(self) -> np.ndarray:
        return self.detection.landmarks


def pipeline_signature(
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
    max_side: int = DEFAULT_MAX_SIDE,
    min_score: float = DEFAULT_MIN_SCORE,
) -> str:
    """Everything that decides which faces and crops come out: the crop version plus the
    detector settings. Training's cache records it, so a changed setting is redone."""
    detector = f"min_face={min_face_size};max_side={max_side};min_score={min_score}"
    return f"{PREPROCESSING_VERSION};{detector}"


class FacePipeline:
    """decode → detect → align, shared by ``training`` and ``app``."""

    def __init__(
        self, detector: FaceDetector | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.detector = detector or FaceDetector()
        self.max_pixels = max_pixels

    @property
    def signature(self) -> str:
        """``pipeline_signature`` of this pipeline's detector settings."""
        d = self.detector
        return pipeline_signature(d.min_face_size, d.max_side, d.min_score)

    def decode(self, data: bytes, max_pixels: int | None = None) -> DecodedImage:
        """Decode upload bytes (raises ``ImageError``); ``max_pixels`` overrides the cap."""
        return decode_image(data, max_pixels=self.max_pixels if max_pixels is None else max_pixels)

    def faces_in_pixels(self, rgb: np.ndarray, max_faces: int | None = None) -> list[AlignedFace]:
        """Detect and align every face in an RGB uint8 array, largest first."""
        detections = self.detector.detect(rgb)
        if max_faces is not None:
            detections = detections[:max_faces]
        return [
            AlignedFace(detection=d, crop=align_face(rgb, d.landmarks, ALIGNED_SIZE)[0])
            for d in detections
        ]

    def faces_in_bytes(
        self, data: bytes, max_faces: int | None = None, max_pixels: int | None = None
    ) -> list[AlignedFace]:
        """Decode image bytes, then detect and align its faces, largest first."""
        return self.faces_in_pixels(self.decode(data, max_pixels).pixels, max_faces=max_faces)

    def faces_in_file(self, path: str, max_faces: int | None = None) -> list[AlignedFace]:
        """Read an image file and process it exactly as an upload of its bytes."""
        with open(path, "rb") as fh:
            return self.faces_in_bytes(fh.read(), max_faces=max_faces)
