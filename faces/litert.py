"""A TensorFlow Lite interpreter from one of two runtimes.

``litert``: the standalone LiteRT interpreter (``ai-edge-litert``), which serves without
TensorFlow in the process (a few tens of MB instead of about 0.5 GB for ``import
tensorflow``). ``tensorflow``: TensorFlow's own ``tf.lite.Interpreter``, for code that has
TensorFlow loaded anyway (training, the reference paths, ``FACEID_ENGINE=tflite-int8-tf``).
Both run the same flatbuffer with the same XNNPACK kernels.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

Runtime = Literal["litert", "tensorflow"]


def new_interpreter(flatbuffer: bytes, threads: int, runtime: Runtime) -> Any:
    """An interpreter of ``flatbuffer`` running on ``threads`` CPU threads."""
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=flatbuffer, num_threads=threads)
    if runtime != "tensorflow":
        raise ValueError(f"unknown TensorFlow Lite runtime {runtime!r}")
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
