"""MobileFaceNet (Chen et al., 2018): a ~1M-parameter face embedding network for 112×112.

Input: float32 RGB pixels in [0, 255]; the (x − 127.5) / 128 normalisation is the model's
first layer, so exported models take raw pixels and there is one source of truth.
Output: the raw (un-normalised) embedding; callers L2-normalise it.
"""

from __future__ import annotations

import keras
from keras import layers

from faces.model_contract import ALIGNED_SIZE

# (expansion, output channels, repeats, first stride) per stage, as in the paper.
DEFAULT_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


# He initialisation for depthwise kernels: Keras' "he_normal" counts k·k·C inputs for a
# (k, k, C, 1) kernel, but each output sees only k·k, which shrinks activations ~√C-fold
# per block; "fan_out" of that kernel shape is exactly k·k.
def _dw_init() -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True):  # type: ignore[no-untyped-def]
    x = layers.Conv2D(
        filters,
        kernel,
        stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    if act:
        x = layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)
    return x


def _dw_bn(x, kernel: int, stride: int, name: str, act: bool = True, padding: str = "same"):  # type: ignore[no-untyped-def]
    x = layers.DepthwiseConv2D(
        kernel,
        stride,
        padding=padding,
        use_bias=False,
        depthwise_initializer=_dw_init(),
        name=f"{name}_dw",
    )(x)
    x = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    if act:
        x = layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)
    return x


def _bottleneck(x, expansion: int, out: int, stride: int, name: str):  # type: ignore[no-untyped-def]
    inp = x
    hidden = int(x.shape[-1]) * expansion
    x = _conv_bn(x, hidden, 1, 1, f"{name}_expand")
    x = _dw_bn(x, 3, stride, f"{name}_dw")
    x = _conv_bn(x, out, 1, 1, f"{name}_project", act=False)
    if stride == 1 and int(inp.shape[-1]) == out:
        x = layers.Add(name=f"{name}_add")([inp, x])
    return x


def build_mobilefacenet(
    input_size: int = ALIGNED_SIZE,
    embedding_dim: int = 128,
    width: float = 1.0,
    stages: tuple[tuple[int, int, int, int], ...] | list[list[int]] | None = None,
    head_channels: int = 512,
    dropout: float = 0.0,
    name: str = "mobilefacenet",
) -> keras.Model:
    """Build MobileFaceNet; ``width`` scales channels, ``stages`` overrides the block plan."""

    def ch(c: int) -> int:
        return max(8, round(c * width / 8) * 8)

    plan = [tuple(s) for s in (stages or DEFAULT_STAGES)]
    image = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="normalise")(image)
    x = _conv_bn(x, ch(64), 3, 2, "stem")
    x = _dw_bn(x, 3, 1, "stem_dw")
    for s, (expansion, out, repeats, stride) in enumerate(plan):
        for r in range(repeats):
            x = _bottleneck(x, expansion, ch(out), stride if r == 0 else 1, f"stage{s}_{r}")
    x = _conv_bn(x, ch(head_channels), 1, 1, "head")
    # global depthwise conv (GDConv): a learned spatial weighting instead of average pooling
    x = _dw_bn(x, int(x.shape[1]), 1, "gdc", act=False, padding="valid")
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(embedding_dim, use_bias=False, name="embedding_dense")(x)
    x = layers.BatchNormalization(epsilon=1e-5, name="embedding_bn", dtype="float32")(x)
    x = layers.Activation("linear", dtype="float32", name="embedding")(x)
    return keras.Model(image, x, name=name)
