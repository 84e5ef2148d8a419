"""Pure flax.linen modules: no optax, no I/O, no training logic."""

from jaxdl.nn.cnn import ConvNet, MyNet
from jaxdl.nn.mlp import ACTIVATIONS, MLP, get_activation
from jaxdl.nn.params import count_params
from jaxdl.nn.recurrent import RecurrentLM
from jaxdl.nn.text2img import TextToImage
from jaxdl.nn.torch_weights import decoder_lm_params_from_nanogpt, mynet_params_from_torch
from jaxdl.nn.unet import UNet

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvNet",
    "MyNet",
    "RecurrentLM",
    "TextToImage",
    "UNet",
    "count_params",
    "decoder_lm_params_from_nanogpt",
    "get_activation",
    "mynet_params_from_torch",
]
