"""Convolutional image classifiers: the reference MyNet, exactly, and a configurable ConvNet.

MyNet is the reference primer's PyTorch `MY_NET`, layer for layer, on NHWC input:

    (B, 48, 48, 3) -conv3x3 32, relu-> -conv3x3 64, relu-> -maxpool 2-> (B, 24, 24, 64)
    -conv3x3 128, relu-> -maxpool 2-> (B, 12, 12, 128) -flatten-> 18432
    -dropout 0.5-> fc 512, relu -dropout 0.5-> fc num_classes (logits)

Parameters: conv1 896, conv2 18,496, conv3 73,856, fc1 9,437,696, fc2 5,130 (10 classes).
`jaxdl.nn.torch_weights.mynet_params_from_torch` converts the reference's PyTorch
weights, so the same numbers can be checked on both sides.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import UserError
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.sharding import conv, dense

PAD1 = ((1, 1), (1, 1))  # PyTorch's padding=1, stated exactly rather than 'SAME'


def torch_default_init(fan_in: int) -> dict:
    """PyTorch's default Conv2d/Linear init: weights and biases U(-1/sqrt(fan_in), +1/sqrt(fan_in)).

    (kaiming_uniform with a=sqrt(5) is exactly this bound.) Flax's default, lecun_normal
    weights and zero biases, starts about 1.7x larger; the reference recipe is tuned for
    PyTorch's, so MyNet uses it unless asked otherwise.
    """
    bound = 1.0 / np.sqrt(fan_in)
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(  # noqa: E731
        key, shape, dtype, -bound, bound)
    return {"kernel_init": uniform, "bias_init": uniform}


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max pool of (B, H, W, C), H and W even: `nn.max_pool`, with a faster grad.

    The forward is flax's (reduce_window, which XLA:CPU runs fastest at inference). The
    gradient goes to the first maximum of each window in row-major order, exactly as
    reduce_window's own gradient (and PyTorch's MaxPool2d) does, but as one fused
    elementwise mask instead of XLA's select-and-scatter, which is slow on CPU: it cuts
    MyNet's CPU train step by about a fifth (benchmarks/).
    """
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def _max_pool_2x2_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_2x2_bwd(res, g):
    x, y = res
    b, h, w, c = x.shape
    corners = [x[:, i::2, j::2] for i in (0, 1) for j in (0, 1)]  # row-major window order
    taken = jnp.zeros(y.shape, bool)
    grads = []
    for corner in corners:  # the first maximum of each window takes the gradient
        first = (corner == y) & ~taken
        taken = taken | first
        grads.append(jnp.where(first, g, jnp.zeros((), g.dtype)))
    top = jnp.stack(grads[:2], axis=3)  # (b, h/2, w/2, 2, c): row 0 of each window
    bottom = jnp.stack(grads[2:], axis=3)
    return (jnp.stack([top, bottom], axis=2).reshape(b, h, w, c),)


max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


class MyNet(nn.Module):
    """The reference CNN (3x48x48 input); dropout is active only when `train=True`."""

    num_classes: int = 10
    dropout_rate: float = 0.5
    torch_init: bool = True  # PyTorch's default initialisation, as the reference trains from
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_images(x, (48, 48, 3), "MyNet")
        base = torch_default_init if self.torch_init else (lambda fan_in: {})
        init = lambda fan_in: {**base(fan_in), **layer_dtypes(self)}  # noqa: E731
        conv3x3 = lambda c_in, c_out, name: conv(  # noqa: E731
            c_out, (3, 3), padding=PAD1, name=name, **init(9 * c_in))
        x = nn.relu(conv3x3(3, 32, "conv1")(x))  # (B, 48, 48, 32)
        x = nn.relu(conv3x3(32, 64, "conv2")(x))  # (B, 48, 48, 64)
        x = max_pool_2x2(x)  # (B, 24, 24, 64)
        x = nn.relu(conv3x3(64, 128, "conv3")(x))  # (B, 24, 24, 128)
        x = max_pool_2x2(x)  # (B, 12, 12, 128)
        x = x.reshape((x.shape[0], -1))  # (B, 18432), flattened (H, W, C)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(dense(512, name="fc1", **init(18432))(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return dense(self.num_classes, name="fc2", **init(512))(x)  # (B, num_classes)


def check_images(x, hwc: tuple[int, int, int], model: str) -> None:
    """Shape and dtype check at trace time, so a bad batch fails before compiling."""
    if x.ndim != 4 or tuple(x.shape[1:]) != hwc:
        raise UserError(f"{model} expects images of shape (batch, {hwc[0]}, {hwc[1]}, {hwc[2]}) "
                        f"NHWC, got {tuple(x.shape)}; resize to {hwc[0]}x{hwc[1]} with "
                        f"{hwc[2]} channels (jaxdl.data.transforms) and put channels last")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise UserError(f"{model} expects float images, got {x.dtype}; scale uint8 pixels to "
                        "[0, 1] and normalise (jaxdl.data.transforms.to_float)")


class ConvNet(nn.Module):
    """A configurable conv stack: per stage conv(3x3)+act [+BatchNorm], then max or avg pool."""

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    dense: Sequence[int] = (128,)
    pool: str = "max"  # 'max' | 'avg'
    dropout_rate: float = 0.0
    batch_norm: bool = False
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        pool = {"max": nn.max_pool, "avg": nn.avg_pool}[self.pool]
        dt = layer_dtypes(self)
        for i, width in enumerate(self.features):
            x = conv(width, (3, 3), padding=PAD1, use_bias=not self.batch_norm,
                        name=f"conv{i + 1}", **dt)(x)
            if self.batch_norm:  # statistics in float32 whatever the dtype (flax)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i + 1}",
                                 **dt)(x)
            x = pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.dense):
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.relu(dense(width, name=f"fc{i + 1}", **dt)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return dense(self.num_classes, name="head", **dt)(x)
