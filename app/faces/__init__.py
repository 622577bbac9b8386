"""The one face pipeline shared by training and serving: decode → detect → align.

Normalisation to the network's input range lives inside the exported SavedModel,
so callers only ever hand it aligned 112×112×3 uint8 crops.
"""

from app.faces.align import ALIGNED_SIZE, ARCFACE_TEMPLATE, align_face
from app.faces.decode import DecodedImage, ImageError, decode_image
from app.faces.detect import DetectedFace, FaceDetector
from app.faces.pipeline import PREPROCESSING_VERSION, AlignedFace, FacePipeline

__all__ = [
    "ALIGNED_SIZE",
    "ARCFACE_TEMPLATE",
    "PREPROCESSING_VERSION",
    "AlignedFace",
    "DecodedImage",
    "DetectedFace",
    "FaceDetector",
    "FacePipeline",
    "ImageError",
    "align_face",
    "decode_image",
]
