"""Face detection with MTCNN (``mtcnn==1.0.0``, MIT, weights shipped in the wheel).

Large photos are downscaled to ``max_side`` first, which bounds the image pyramid; boxes
and landmarks are mapped back to the original pixel grid before alignment.

MTCNN 1.0.0 counts its pyramid levels as if the pyramid started at scale 1, whatever
``min_face_size`` is; from 30 px on, its last levels shrink below PNet's 12-px window,
TensorFlow raises, and the library reports "no face". We replace that one function with
a pyramid that stops at the last level still 12 px wide (``_scale_pyramid``), so
``min_face_size`` works as documented: it sets the first (largest and most expensive)
pyramid level at ``12 / min_face_size`` of the photo.

MTCNN 1.0.0 calls its three Keras networks eagerly, once per pyramid scale, which makes
detection Python-bound. We compile each network once with ``tf.function`` and a
shape-polymorphic signature, so a call is one graph execution with no retracing and
without holding the GIL: several times faster (docs/BENCHMARKS.md), and concurrent
requests can detect in parallel.

That compiled library path is the ``reference`` backend. The default ``lite`` backend
(``faces/mtcnn_lite.py``) runs the same weights and algorithm with the three networks in
TensorFlow Lite (XNNPACK) and the resizing, cropping and box handling in NumPy: the same
faces (boxes and landmarks within a pixel, tested) for less than half the CPU. Given
``lite_nets`` (the three flatbuffers, converted elsewhere), the ``lite`` backend runs them on
the LiteRT interpreter and neither TensorFlow nor the ``mtcnn`` package is imported: that
is how the service detects (app/inference/engine_cache.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

DEFAULT_MAX_SIDE = 640
DEFAULT_MIN_FACE_SIZE = 40
DEFAULT_MIN_SCORE = 0.9
Backend = Literal["lite", "reference"]


@dataclass(frozen=True)
class DetectedFace:
    """One detected face in original-image pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5×2: left eye, right eye, nose, left mouth, right mouth

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _scale_pyramid(
    width: int, height: int, min_face_size: int, scale_factor: float, min_size: int = 12
) -> np.ndarray:
    """Scales of MTCNN's image pyramid: from ``min_size / min_face_size`` down by
    ``scale_factor`` while the shorter side stays at least ``min_size`` pixels."""
    first = min_size / min_face_size
    shorter = min(width, height) * first
    if shorter < min_size:
        return np.zeros(0)
    count = int(np.floor(np.log(min_size / shorter) / np.log(scale_factor) + 1e-9)) + 1
    return first * scale_factor ** np.arange(count)


class FaceDetector:
    """Compiled MTCNN returning faces sorted largest first; safe to call from several threads.

    ``lite_nets``: with the ``lite`` backend, ``faces.mtcnn_lite.convert_networks``' output
    to run on LiteRT (no TensorFlow in this process); None: convert here with TensorFlow."""

    def __init__(
        self,
        max_side: int = DEFAULT_MAX_SIDE,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        min_score: float = DEFAULT_MIN_SCORE,
        backend: Backend = "lite",
        lite_nets: Mapping[str, bytes] | None = None,
    ) -> None:
        if min_face_size < 12:
            raise ValueError("min_face_size must be at least 12 (PNet's window)")
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.backend = backend
        self._mtcnn: Any = None
        self._lite: Any = None
        if backend == "lite" and lite_nets is not None:
            from faces.mtcnn_lite import LiteMTCNN

            self._lite = LiteMTCNN(flatbuffers=lite_nets, runtime="litert")
            return
        import mtcnn.stages.stage_pnet
        import tensorflow as tf
        from mtcnn import MTCNN  # imported lazily: it pulls in TensorFlow

        mtcnn.stages.stage_pnet.build_scale_pyramid = _scale_pyramid

        self._mtcnn = MTCNN(device="CPU:0")
        if backend == "lite":
            from faces.mtcnn_lite import LiteMTCNN

            self._lite = LiteMTCNN([stage._model for stage in self._mtcnn.stages])
        elif backend != "reference":
            raise ValueError(f"unknown detector backend {backend!r}")
        spec = tf.TensorSpec(shape=[None, None, None, 3], dtype=tf.float32)
        for stage in self._mtcnn.stages:
            stage._model = tf.function(stage._model, input_signature=[spec])

    def raw_detections(self, rgb: np.ndarray) -> np.ndarray:
        """mtcnn's N×16 rows (image id, x1, y1, x2, y2, score, 5 x, 5 y) for an image
        already at detection size, every score, in the backend's order."""
        if self._lite is not None:
            scales = _scale_pyramid(rgb.shape[1], rgb.shape[0], self.min_face_size, 0.709)
            return self._lite.detect(rgb, scales)
        raw = self._mtcnn.detect_faces(
            rgb, output_type="numpy", box_format="xyxy", min_face_size=self.min_face_size
        )
        return np.asarray(raw, dtype=np.float64).reshape(-1, 16)

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Detect faces in an H×W×3 uint8 RGB array, largest first."""
        height, width = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        if min(small.shape[:2]) < self.min_face_size:  # no pyramid level fits PNet
            return []
        raw = self.raw_detections(small)
        faces = []
        for row in raw:
            score = float(row[5])
            if score < self.min_score:
                continue
            box = row[1:5] / scale
            landmarks = np.stack([row[6:11], row[11:16]], axis=1) / scale
            faces.append(
                DetectedFace(
                    box=(
                        float(np.clip(box[0], 0, width)),
                        float(np.clip(box[1], 0, height)),
                        float(np.clip(box[2], 0, width)),
                        float(np.clip(box[3], 0, height)),
                    ),
                    score=score,
                    landmarks=landmarks,
                )
            )
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
