"""A small CNN that classifies MNIST digits, used to judge generated digits and as a feature extractor for a
Frechet distance (penultimate features, like the Inception features of FID).

Pretrained weights are kept next to this file in `pretrained/mnist-classifier` (trained on the bundled "train" split
only by `train_classifier.py`).
"""

from pathlib import Path

import torch
import torch.nn as nn
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from diffusers_pdae.bundled import MNIST_IMAGE_SIZE
from diffusers_pdae.image_utils import pad_to_size

DEFAULT_CLASSIFIER_PATH = Path(__file__).resolve().parent / "pretrained" / "mnist-classifier"


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution that keeps the spatial size, followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DigitClassifier(ModelMixin, ConfigMixin):
    r"""
    A small CNN classifier for MNIST digits: 3x3 conv blocks (conv, batch norm, ReLU) separated by 2x2 max pooling,
    global average pooling, a linear feature layer (`feature_dim`, ReLU) and a linear classifier. With the default
    `block_channels` the resolution goes 32 -> 16 -> 8 -> 4 before the global pooling.

    Inputs are tensors `(B, 1, sample_size, sample_size)` in [-1, 1] with a background of -1, i.e. the library's
    convention produced by [`~diffusers_pdae.bundled.mnist_to_tensor`] (28x28 MNIST digits padded by 2 pixels on each
    side to 32x32). Raw 28x28 inputs `(B, 1, 28, 28)` are also accepted and padded with -1 internally, which gives
    exactly the same result as padding them beforehand. Other sizes raise a `ValueError`.

    Parameters:
        block_channels (`tuple[int, ...]`, defaults to `(32, 64, 128, 128)`): output channels of the conv blocks.
        feature_dim (`int`, defaults to 128): dimension of the penultimate feature vector returned by `features`.
        num_classes (`int`, defaults to 10): number of classes.
        sample_size (`int`, defaults to 32): expected input height and width.
        dropout (`float`, defaults to 0.1): dropout applied to the features before the classifier (training only).
    """

    @register_to_config
    def __init__(
        self,
        block_channels: tuple[int, ...] = (32, 64, 128, 128),
        feature_dim: int = 128,
        num_classes: int = 10,
        sample_size: int = 32,
        dropout: float = 0.1,
    ):
        super().__init__()
        if len(block_channels) == 0:
            raise ValueError("`block_channels` must not be empty.")
        layers = []
        in_channels = 1
        for index, out_channels in enumerate(block_channels):
            if index > 0:
                layers.append(nn.MaxPool2d(2))
            layers.append(_conv_block(in_channels, out_channels))
            in_channels = out_channels
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.conv_blocks = nn.Sequential(*layers)
        self.feature_layer = nn.Sequential(nn.Linear(in_channels, feature_dim), nn.ReLU(inplace=True))
        self.feature_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def _prepare_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Check the shape of `images` and pad 28x28 digits to `sample_size`. Returns `(B, 1, S, S)`."""
        if images.ndim != 4:
            raise ValueError(f"Expected images of shape (B, 1, H, W), got shape {tuple(images.shape)}.")
        if images.shape[1] != 1:
            raise ValueError(f"Expected 1 (grayscale) channel, got {images.shape[1]} channels {tuple(images.shape)}.")
        size = self.config.sample_size
        height, width = images.shape[-2:]
        if (height, width) == (MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE) and size > MNIST_IMAGE_SIZE:
            return pad_to_size(images, size)
        if (height, width) != (size, size):
            raise ValueError(
                f"Expected {size}x{size} (or {MNIST_IMAGE_SIZE}x{MNIST_IMAGE_SIZE}) images, got {height}x{width}; "
                "resize them first, e.g. with `diffusers_pdae.bundled.mnist_to_tensor`."
            )
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """
        Penultimate features, e.g. for a Frechet distance.

        Args:
            images (`torch.Tensor`): `(B, 1, 32, 32)` or `(B, 1, 28, 28)` in [-1, 1].

        Returns:
            `torch.Tensor`: `(B, feature_dim)`, non-negative (after ReLU).
        """
        images = self._prepare_inputs(images).to(dtype=self.dtype)
        return self.feature_layer(self.conv_blocks(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images (`torch.Tensor`): `(B, 1, 32, 32)` or `(B, 1, 28, 28)` in [-1, 1].

        Returns:
            `torch.Tensor`: logits `(B, num_classes)`.
        """
        return self.classifier(self.feature_dropout(self.features(images)))

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """
        Class probabilities (no gradient).

        Args:
            images (`torch.Tensor`): `(B, 1, 32, 32)` or `(B, 1, 28, 28)` in [-1, 1].

        Returns:
            `torch.Tensor`: `(B, num_classes)`, rows sum to 1.
        """
        return self(images).float().softmax(dim=-1)


def load_digit_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitClassifier:
    """
    Load a trained [`DigitClassifier`] in eval mode.

    Args:
        path (`str` or `Path`, *optional*): directory written by `save_pretrained`. Defaults to the weights in
            `pretrained/mnist-classifier` next to this file.
        device (`str` or `torch.device`, defaults to `"cpu"`): device to move the model to.

    Returns:
        `DigitClassifier`: the model in eval mode.
    """
    path = Path(path) if path is not None else DEFAULT_CLASSIFIER_PATH
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"No digit classifier found at {path} (missing config.json). The shipped weights live in "
            "`examples/mnist_paper/pretrained/mnist-classifier`; recreate them with "
            "`python examples/mnist_paper/train_classifier.py`."
        )
    model = DigitClassifier.from_pretrained(path)
    return model.to(device).eval()
