"""The one face pipeline shared by training and serving: decode → detect → align →
quality, and the model contract at its end (``faces.model_contract``).

Normalisation to the network's input range lives inside the exported SavedModel,
so callers only ever hand it aligned 112×112×3 uint8 crops.
"""

from faces.align import ALIGNED_SIZE, ARCFACE_TEMPLATE, align_face
from faces.decode import DecodedImage, ImageError, decode_image
from faces.detect import DetectedFace, FaceDetector
from faces.pipeline import PREPROCESSING_VERSION, AlignedFace, FacePipeline
from faces.quality import FaceQuality, assess_quality

__all__ = [
    "ALIGNED_SIZE",
    "ARCFACE_TEMPLATE",
    "PREPROCESSING_VERSION",
    "AlignedFace",
    "DecodedImage",
    "DetectedFace",
    "FaceDetector",
    "FacePipeline",
    "FaceQuality",
    "ImageError",
    "align_face",
    "assess_quality",
    "decode_image",
]
