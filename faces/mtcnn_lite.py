"""MTCNN 1.0.0's three stages in NumPy + TensorFlow Lite (XNNPACK): the fast detector.

``mtcnn==1.0.0`` runs each stage as a handful of eager TensorFlow ops (pyramid resize,
``crop_and_resize``) around its Keras networks, and its box handling in NumPy; on a
250×250 photo that costs about 23 ms, of which the networks' arithmetic is a small part.
This module keeps the library's weights and reproduces its algorithm step by step:

- pyramid levels resized with TensorFlow's ``AREA`` rule, as two small matrix products
  (``area_matrix``; equal to ``tf.image.resize(..., "area")`` to float rounding);
- the three networks converted once to TensorFlow Lite flatbuffers and run by XNNPACK,
  one interpreter per thread and pyramid level (R-Net/O-Net: per batch size, padded
  to a multiple of 8 past 8 candidates). ``convert_networks`` needs TensorFlow; the
  service runs it in a short-lived child process and hands the flatbuffers to
  ``LiteMTCNN(flatbuffers=..., runtime="litert")``, which then needs neither TensorFlow
  nor the ``mtcnn`` package (app/inference/engine_cache.py);
- ``crop_and_resize`` for the R-Net/O-Net patches in NumPy (TensorFlow's bilinear rule,
  zero outside the image);
- the library's box arithmetic and its own NMS rule (a box is dropped when ANY
  higher-scored box overlaps it above the threshold, kept or not), vectorised.

``tests/app/test_mtcnn_lite.py`` checks it against the library on real photos: same
faces, boxes and landmarks within a pixel, same crops, same embeddings within tolerance.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from faces.litert import Runtime, new_interpreter
from faces.timing import stage

SCALE_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.8)  # P-Net, R-Net, O-Net scores, as mtcnn 1.0.0's defaults
_PNET_NMS_LEVEL, _PNET_NMS_ALL, _RNET_NMS, _ONET_NMS = 0.5, 0.7, 0.7, 0.7
_MAX_BATCH = 128  # R-Net/O-Net candidates per interpreter call
_PNET_SLOTS = 32  # P-Net interpreters (one per pyramid level) kept per thread
#: The three networks: input shape of the converted function, output widths in the order
#: the stages read them, and interpreters kept per thread.
NETWORKS: dict[str, tuple[list[int | None], tuple[int, ...], int]] = {
    "pnet": ([1, None, None, 3], (4, 2), _PNET_SLOTS),
    "rnet": ([None, 24, 24, 3], (4, 2), 24),
    "onet": ([None, 48, 48, 3], (4, 10, 2), 24),
}


@functools.lru_cache(maxsize=1024)
def area_taps(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Resizing a length-n axis to m with TensorFlow's AREA rule: output pixel i averages
    the input over [i·n/m, (i+1)·n/m), edge pixels weighted by the fraction they cover.
    Returns (m×K input indices, m×K float32 weights), K the widest window; unused taps
    have weight 0."""
    scale = n / m
    taps: list[list[tuple[int, float]]] = []
    for i in range(m):
        a, b = i * scale, (i + 1) * scale
        row = [
            (min(j, n - 1), (min(j + 1, b) - max(j, a)) / scale)
            for j in range(int(np.floor(a)), int(np.ceil(b)))
        ]
        taps.append(row)
    k = max(len(row) for row in taps)
    index = np.zeros((m, k), dtype=np.intp)
    weight = np.zeros((m, k), dtype=np.float32)
    for i, row in enumerate(taps):
        for t, (j, wt) in enumerate(row):
            index[i, t], weight[i, t] = j, wt
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an H×W×C float32 image with the AREA rule (``tf.image.resize`` ``area``,
    equal to float rounding), as two banded weighted sums (no BLAS, no threads)."""
    h, w, _ = image.shape
    index, weight = area_taps(h, height)
    rows = np.einsum("hkwc,hk->hwc", image[index], weight)
    index, weight = area_taps(w, width)
    out: np.ndarray = np.einsum("hwkc,wk->hwc", rows[:, index], weight)
    return out


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.crop_and_resize`` for one H×W×C float32 image: ``boxes`` are N×4
    (y1, x1, y2, x2) normalised by (H-1, W-1) as TensorFlow does; bilinear sampling on a
    size×size grid; samples outside the image are 0. Returns N×size×size×C float32."""
    h, w, _ = image.shape
    boxes = boxes.astype(np.float32)
    steps = np.arange(size, dtype=np.float32)

    def axis(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        scale = (hi - lo) * np.float32(n - 1) / np.float32(size - 1)
        pos = lo[:, None] * np.float32(n - 1) + steps[None, :] * scale[:, None]
        valid = (pos >= 0) & (pos <= n - 1)
        first = np.floor(pos)
        lerp = (pos - first).astype(np.float32)
        first_i = np.clip(first, 0, n - 1).astype(np.intp)
        second_i = np.clip(np.ceil(pos), 0, n - 1).astype(np.intp)
        return first_i, second_i, lerp, valid

    top, bottom, y_lerp, y_ok = axis(boxes[:, 0], boxes[:, 2], h)
    left, right, x_lerp, x_ok = axis(boxes[:, 1], boxes[:, 3], w)
    # Gather the four neighbours as rows of the flattened image (np.take is about twice
    # as fast as 2-D fancy indexing here), then interpolate along x, then along y.
    flat = image.reshape(-1, image.shape[2])
    t_rows, b_rows = (top * w)[:, :, None], (bottom * w)[:, :, None]
    l_cols, r_cols = left[:, None, :], right[:, None, :]
    top_left = np.take(flat, (t_rows + l_cols).ravel(), axis=0)
    top_right = np.take(flat, (t_rows + r_cols).ravel(), axis=0)
    bottom_left = np.take(flat, (b_rows + l_cols).ravel(), axis=0)
    bottom_right = np.take(flat, (b_rows + r_cols).ravel(), axis=0)
    grid = (len(boxes), size, size)
    xl = np.broadcast_to(x_lerp[:, None, :], grid).reshape(-1, 1)
    yl = np.broadcast_to(y_lerp[:, :, None], grid).reshape(-1, 1)
    upper = top_left + (top_right - top_left) * xl
    lower = bottom_left + (bottom_right - bottom_left) * xl
    out = (upper + (lower - upper) * yl).reshape(*grid, image.shape[2])
    mask = (y_ok[:, :, None] & x_ok[:, None, :])[..., None]
    return np.where(mask, out, np.float32(0.0)).astype(np.float32, copy=False)


def _sort_desc(boxes: np.ndarray, column: int = 5) -> np.ndarray:
    """mtcnn's ``sort_by_scores(..., ascending=False)``: argsort, reversed."""
    return boxes[np.argsort(boxes[:, column])[::-1]]


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """mtcnn 1.0.0's NMS over rows already sorted by score (x1, y1, x2, y2 in columns
    1–4): row j survives when no earlier row (kept or not) overlaps it above
    ``threshold`` (IoU for ``union``, intersection over the smaller area for ``min``)."""
    if len(boxes) < 2:
        return boxes
    x1, y1, x2, y2 = (boxes[:, k] for k in range(1, 5))
    area = (x2 - x1) * (y2 - y1)
    iw = np.maximum(0.0, np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None]))
    ih = np.maximum(0.0, np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None]))
    inter = iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "union":
            overlap = inter / (area[:, None] + area[None, :] - inter)
        else:
            overlap = inter / np.minimum(area[:, None], area[None, :])
    suppressed = np.triu(overlap > threshold, k=1).any(axis=0)
    return boxes[~suppressed]


def square(boxes: np.ndarray) -> np.ndarray:
    """mtcnn's ``resize_to_square``: grow the shorter side about the centre."""
    out = boxes.copy()
    w = out[:, 3] - out[:, 1]
    h = out[:, 4] - out[:, 2]
    side = np.maximum(w, h)
    out[:, 1] = out[:, 1] + w * 0.5 - side * 0.5
    out[:, 2] = out[:, 2] + h * 0.5 - side * 0.5
    out[:, 3] = out[:, 1] + side
    out[:, 4] = out[:, 2] + side
    return out


def _refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """mtcnn's ``adjust_bboxes``: move each side by offset × (size + 1)."""
    out = boxes.copy()
    w = out[:, 3] - out[:, 1] + 1
    h = out[:, 4] - out[:, 2] + 1
    out[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return out


def _flatbuffer(model: Any, shape: list[int | None]) -> bytes:
    """Convert a Keras network to a TensorFlow Lite flatbuffer with its weights frozen
    into constants (unfrozen resource reads come out of the converter as NaN)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(model).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(fn)]
    )
    flatbuffer: bytes = converter.convert()
    return flatbuffer


def convert_networks(keras_stages: list[Any] | None = None) -> dict[str, bytes]:
    """The flatbuffers of mtcnn 1.0.0's P-Net, R-Net and O-Net (its shipped weights when
    ``keras_stages`` is None), keyed by ``NETWORKS``' names. Needs TensorFlow."""
    if keras_stages is None:
        from mtcnn import MTCNN

        keras_stages = [s._model for s in MTCNN(device="CPU:0").stages]
    return {
        name: _flatbuffer(model, NETWORKS[name][0])
        for name, model in zip(NETWORKS, keras_stages, strict=True)
    }


def _bucket(n: int) -> int:
    """Batch size an R-Net/O-Net call is padded to: n up to 8, then a multiple of 8."""
    return n if n <= 8 else -(-n // 8) * 8


class _LiteNet:
    """One converted network with, per thread, one interpreter per slot; an interpreter
    whose input shape changes is resized in place (about 0.2 ms)."""

    def __init__(
        self, flatbuffer: bytes, out_dims: tuple[int, ...], slots: int, runtime: Runtime
    ) -> None:
        self.flatbuffer = flatbuffer
        self.out_dims = out_dims
        self.slots = slots
        self.runtime: Runtime = runtime
        self._local = threading.local()

    def _interpreter(self, slot: Any, shape: tuple[int, ...]) -> tuple[Any, int, list[int]]:
        cached: OrderedDict[Any, list[Any]] | None = getattr(self._local, "cache", None)
        if cached is None:
            cached = self._local.cache = OrderedDict()
        entry = cached.get(slot)
        if entry is None:
            interp = new_interpreter(self.flatbuffer, 1, self.runtime)
            index = int(interp.get_input_details()[0]["index"])
            by_dim = {int(d["shape"][-1]): int(d["index"]) for d in interp.get_output_details()}
            entry = [interp, index, [by_dim[d] for d in self.out_dims], None]
            cached[slot] = entry
            if len(cached) > self.slots:
                cached.popitem(last=False)
        else:
            cached.move_to_end(slot)
        interp, index, outputs, current = entry
        if current != shape:
            interp.resize_tensor_input(index, list(shape), strict=False)
            interp.allocate_tensors()
            entry[3] = shape
        return interp, index, outputs

    def run(self, x: np.ndarray, slot: Any = None) -> list[np.ndarray]:
        """Outputs (in ``out_dims`` order) for one input array; ``slot`` picks the
        interpreter (default: one per input shape)."""
        shape = tuple(x.shape)
        interp, index, outputs = self._interpreter(shape if slot is None else slot, shape)
        interp.set_tensor(index, x)
        interp.invoke()
        return [interp.get_tensor(i) for i in outputs]

    def run_batched(self, x: np.ndarray) -> list[np.ndarray]:
        """Run N patches in batches of at most ``_MAX_BATCH``, each padded to ``_bucket``."""
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(x), _MAX_BATCH):
            chunk = x[start : start + _MAX_BATCH]
            n = len(chunk)
            padded_n = _bucket(n)
            if padded_n != n:
                pad = np.zeros((padded_n - n, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            parts.append([o[:n] for o in self.run(np.ascontiguousarray(chunk))])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.out_dims))]


class LiteMTCNN:
    """mtcnn 1.0.0's detector (same weights, same algorithm) on TensorFlow Lite + NumPy.

    From ``flatbuffers`` (``convert_networks``' output) when given, else converted here
    from ``keras_stages`` (or the library's own networks); ``runtime`` runs them."""

    def __init__(
        self,
        keras_stages: list[Any] | None = None,
        *,
        flatbuffers: Mapping[str, bytes] | None = None,
        runtime: Runtime = "tensorflow",
    ) -> None:
        if flatbuffers is None:
            flatbuffers = convert_networks(keras_stages)
        nets = {
            name: _LiteNet(flatbuffers[name], out_dims, slots, runtime)
            for name, (_, out_dims, slots) in NETWORKS.items()
        }
        self.pnet, self.rnet, self.onet = nets["pnet"], nets["rnet"], nets["onet"]

    def detect(self, rgb: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Faces in an H×W×3 uint8 image over the pyramid ``scales``: N×16 rows as mtcnn's
        ``detect_faces(output_type="numpy", box_format="xyxy")`` returns them (image id,
        x1, y1, x2, y2, score, 5 landmark x, 5 landmark y), boxes clipped to the image."""
        height, width = rgb.shape[:2]
        with stage("detect.normalise"):
            image = (rgb.astype(np.float32) - np.float32(127.5)) / np.float32(128.0)
        boxes = self._pnet(image, scales)
        if len(boxes):
            boxes = self._rnet(image, boxes)
        if len(boxes):
            boxes = self._onet(image, boxes)
        if not len(boxes):
            return np.zeros((0, 16))
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width - 1)
        boxes[:, [2, 4]] = np.clip(boxes[:, [2, 4]], 0, height - 1)
        return boxes

    def _pnet(self, image: np.ndarray, scales: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        threshold = THRESHOLDS[0]
        found = []
        for level, scale in enumerate(scales):
            h, w = (np.asarray([height, width]) * scale).astype(np.int32)
            with stage(f"detect.pnet.resize.level{level}"):
                level_image = area_resize(image, int(h), int(w))[None]
            with stage(f"detect.pnet.net.level{level}"):
                reg, cls = self.pnet.run(level_image, slot=level)
            with stage("detect.pnet.boxes"):
                score = cls[0, :, :, 1]
                ys, xs = np.nonzero(score > threshold)
                if not len(ys):
                    continue
                r = reg[0, ys, xs].astype(np.float64).T
                s = score[ys, xs].astype(np.float64)
                x0, y0 = xs * 2 + 1, ys * 2 + 1
                x3, y3 = xs * 2 + 12, ys * 2 + 12
                rows = np.stack(
                    [np.zeros_like(s), x0 + r[0] * 11, y0 + r[1] * 11, x3 + r[2] * 11,
                     y3 + r[3] * 11, s],
                    axis=1,
                )  # fmt: skip
                rows = _sort_desc(rows)
                rows[:, 1:5] /= scale
            with stage("detect.pnet.nms"):
                found.append(nms(rows, _PNET_NMS_LEVEL))
        if not found:
            return np.zeros((0, 6))
        with stage("detect.pnet.nms"):
            boxes = nms(_sort_desc(np.concatenate(found)), _PNET_NMS_ALL)
        return square(boxes)

    def _patches(self, image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        height, width = image.shape[:2]
        coords = boxes[:, [2, 1, 4, 3]] / np.asarray([height, width, height, width])
        return crop_and_resize(image, coords, size)

    def _rnet(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        with stage("detect.rnet.crop"):
            patches = self._patches(image, boxes, 24)
        with stage("detect.rnet.net"):
            offsets, scores = self.rnet.run_batched(patches)
        with stage("detect.rnet.boxes"):
            boxes = boxes.copy()
            boxes[:, 5] = scores[:, 1]
            boxes = _refine(boxes, offsets)
            boxes = boxes[boxes[:, 5] > THRESHOLDS[1]]
        with stage("detect.rnet.nms"):
            boxes = nms(_sort_desc(boxes), _RNET_NMS)
        return square(boxes)

    def _onet(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        with stage("detect.onet.crop"):
            patches = self._patches(image, boxes, 48)
        with stage("detect.onet.net"):
            offsets, marks, scores = self.onet.run_batched(patches)
        with stage("detect.onet.boxes"):
            marks = marks.astype(np.float64)
            w = boxes[:, 3:4] - boxes[:, 1:2] + 1
            h = boxes[:, 4:5] - boxes[:, 2:3] + 1
            marks[:, 0:5] = w * marks[:, 0:5] + boxes[:, 1:2] - 1
            marks[:, 5:10] = h * marks[:, 5:10] + boxes[:, 2:3] - 1
            boxes = boxes.copy()
            boxes[:, 5] = scores[:, 1]
            boxes = np.concatenate([_refine(boxes, offsets), marks], axis=1)
            boxes = boxes[boxes[:, 5] > THRESHOLDS[2]]
        with stage("detect.onet.nms"):
            return nms(_sort_desc(boxes), _ONET_NMS, method="min")
