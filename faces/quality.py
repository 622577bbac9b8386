"""Face quality: how much an aligned face can be trusted, from what we can measure.

Four measurements, each mapped to [0, 1] by a linear ramp between a "useless" and a
"good" value (``QUALITY_RAMPS``), and ``quality`` = the lowest of the four, so the worst
problem decides and names the reason:

- ``size``: inter-ocular distance in the photo's pixels (eye centres from the detector's
  landmarks). Small faces are upsampled into the 112×112 crop and lose identity detail.
- ``sharpness``: 1 − the *blur effect* of the aligned crop (``blur_effect``): how much of
  its neighbour-to-neighbour variation survives a further blur. A ratio, so it does not
  depend on the face's contrast or brightness, and JPEG compression barely moves it. It
  replaced the variance of the Laplacian, which refused clearly recognisable low-contrast
  250×250 news photos while rating heavily compressed ones higher than the originals
  (docs/MODEL.md, "Face quality": the blur effect predicts recognition failure better).
- ``pose``: frontalness from the five landmarks: how far the nose sits from the middle
  of the eyes, relative to the eye distance, in the eye line's frame (0 = frontal,
  ≈ 0.5 = profile), and how far the mouth is from the eye line relative to eye distance
  (very small when the head is tilted far up or down).
- ``confidence``: the detector's score.

The ramps were set from measurements on identity-disjoint validation faces and degraded
copies of them (docs/MODEL.md, "Face quality"; ``python -m bench.quality_floor``); the
floors that act on ``quality`` are service settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# measurement → (value at quality 0, value at quality 1)
QUALITY_RAMPS: dict[str, tuple[float, float]] = {
    "size": (6.0, 24.0),  # inter-ocular pixels
    "sharpness": (0.15, 0.30),  # 1 − blur effect of the 112×112 crop
    "pose": (0.75, 0.45),  # nose offset / eye distance (lower is better)
    "confidence": (0.85, 0.97),  # MTCNN score
}

# Words for a face whose quality is held down by one measurement.
QUALITY_PROBLEMS = {
    "size": "the face is too small",
    "sharpness": "the face is blurred",
    "pose": "the face is turned too far (profile)",
    "confidence": "the detector is unsure it is a face",
}


@dataclass(frozen=True)
class FaceQuality:
    """Quality of one face: ``score`` in [0, 1], its parts, and the raw measurements."""

    score: float
    parts: dict[str, float]
    measurements: dict[str, float]

    @property
    def weakest(self) -> str:
        """The measurement that sets ``score``."""
        return min(self.parts, key=lambda k: self.parts[k])

    def problems(self, floor: float) -> list[str]:
        """Names of the measurements under ``floor``, worst first."""
        bad = [k for k, v in self.parts.items() if v < floor]
        return sorted(bad, key=lambda k: self.parts[k])

    def explain(self, floor: float) -> str:
        """A sentence naming every problem under ``floor``."""
        names = self.problems(floor) or [self.weakest]
        return "; ".join(QUALITY_PROBLEMS[n] for n in names)


def _ramp(value: float, bad: float, good: float) -> float:
    t = (value - bad) / (good - bad)
    return float(min(1.0, max(0.0, t)))


def pose_offset(landmarks: np.ndarray) -> float:
    """How far from frontal the landmarks are: 0 frontal, about 0.5 and more in profile.

    The larger of (a) the nose's sideways offset from the eyes' midpoint and (b) how far
    the mouth-to-eye-line distance falls short of a frontal face's, both relative to the
    eye distance and measured in the eye line's frame (so in-plane roll does not count).
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    left, right, nose, mouth_l, mouth_r = pts
    axis = right - left
    eye_dist = float(np.hypot(*axis))
    if eye_dist < 1e-6:
        return 1.0
    ux = axis / eye_dist
    uy = np.array([-ux[1], ux[0]])
    mid = (left + right) / 2
    sideways = abs(float((nose - mid) @ ux)) / eye_dist
    # frontal faces have the mouth about 1.15 eye distances below the eye line (template)
    drop = abs(float(((mouth_l + mouth_r) / 2 - mid) @ uy)) / eye_dist
    pitch = max(0.0, 0.75 - drop)
    return max(sideways, pitch)


def assess_quality(crop: np.ndarray, landmarks: np.ndarray, detection_score: float) -> FaceQuality:
    """Quality of one aligned face (its crop, its landmarks in the photo, its score)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    measurements = {
        "size": float(np.hypot(*(pts[1] - pts[0]))),
        "sharpness": 1.0 - blur_effect(crop),
        "pose": pose_offset(pts),
        "confidence": float(detection_score),
    }
    parts = {k: _ramp(v, *QUALITY_RAMPS[k]) for k, v in measurements.items()}
    return FaceQuality(score=min(parts.values()), parts=parts, measurements=measurements)


def _blur_effect_down(grey: np.ndarray, width: int) -> float:
    """The blur effect along axis 0 (down the columns) of a grey image."""
    n = grey.shape[0]
    padded = np.pad(grey, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    c = np.concatenate([np.zeros((1, grey.shape[1]), grey.dtype), np.cumsum(padded, axis=0)])
    blurred = (c[width : width + n] - c[:n]) / width  # a ``width``-tall box filter
    d_f = np.abs(np.diff(grey, axis=0))
    d_b = np.abs(np.diff(blurred, axis=0))
    s_f = float(d_f.sum())
    if s_f <= 1e-9:
        return 1.0
    return float(np.minimum(d_f, d_b).sum()) / s_f


def blur_effect(crop: np.ndarray, width: int = 9) -> float:
    """How blurred a crop is, 0 (sharp) to 1 (flat), independent of its contrast.

    The "blur effect" of Crête et al. (SPIE 2007): blur the image again with a ``width``
    box filter and measure how much of its neighbour-to-neighbour variation that removes.
    A sharp image loses most of it; one that is already blurred loses little. Being a
    ratio, it does not change with the face's contrast or brightness, which dominate the
    variance of the Laplacian. The larger of the vertical and horizontal values.
    """
    grey = np.asarray(crop, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114])
    return max(_blur_effect_down(grey, width), _blur_effect_down(grey.T, width))
