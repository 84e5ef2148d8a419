"""Pure flax.linen modules: no optax, no I/O, no training logic."""

from jaxdl.nn.cnn import ConvNet, MyNet, mynet_params_from_torch
from jaxdl.nn.mlp import ACTIVATIONS, MLP, get_activation
from jaxdl.nn.recurrent import RecurrentLM

__all__ = ["ACTIVATIONS", "MLP", "ConvNet", "MyNet", "get_activation", "mynet_params_from_torch"]
__all__ += ["RecurrentLM"]
from jaxdl.nn.text2img import TextToImage  # noqa: E402
from jaxdl.nn.unet import UNet  # noqa: E402

__all__ += ["TextToImage", "UNet"]
