"""What ships inside the package so that the demo, the tests and a first training run work offline.

- `ddpm-mnist`: a `DDPMPipeline` pre-trained on the bundled MNIST "train" split (the default frozen DPM of
  `examples/train_pdae.py`);
- `pdae-mnist`: a `PDAEPipeline` trained on that DPM (the default of `examples/demo.py`);
- `ldm-mnist`: a latent diffusion model, diffusers' `LDMPipeline` (`vqvae`, `unet`, `scheduler`): a `VQModel` with 4x
  downsampling (32-px digits -> 4x8x8 latents) and a `UNet2DModel` on its latents, trained on the same split;
- `pdae-ldm-mnist`: a `PDAEPipeline` trained on `ldm-mnist` (its `vae` is `ldm-mnist`'s `vqvae`), with a latent
  sampler;
- `sd-mnist`: a small Stable Diffusion, diffusers' `StableDiffusionPipeline` (`vae` an `AutoencoderKL` with 4x
  downsampling, `unet` a `UNet2DConditionModel`, a small CLIP `text_encoder` and `tokenizer`, `scheduler`), trained on
  the digits captioned "a handwritten digit seven", 10% of the captions empty;
- `pdae-sd-mnist`: a `PDAEPipeline` trained on `sd-mnist` (G and the frozen UNet read the empty prompt, kept as a
  `prompt_embedding`), with a latent sampler;
- `dit-mnist`: a small class-conditional diffusion transformer, diffusers' `DiTPipeline` (`transformer` a
  `DiTTransformer2DModel` on `sd-mnist`'s autoencoder's 4x8x8 latents, `vae`, `scheduler`), trained on the digits'
  labels, 10% dropped to the null class;
- `pdae-dit-mnist`: a `PDAEPipeline` trained on `dit-mnist` (the frozen transformer asked with the null class, G a
  `TransformerGradientEstimator`), with a latent sampler;
- `mnist.npz`: 10,000 real MNIST digits with a fixed train/test split, read by [`load_mnist`] and friends.

The checkpoints are package data, so [`checkpoint_path`] finds them from any working directory and after a
non-editable `pip install .`:

    >>> from diffusers_pdae.bundled import checkpoint_path
    >>> pipe = PDAEPipeline.from_pretrained(checkpoint_path("pdae-mnist"))
"""

from __future__ import annotations

from pathlib import Path

from .mnist import (
    MNIST_CLASS_NAMES,
    MNIST_IMAGE_SIZE,
    MNIST_SPLITS,
    load_mnist,
    load_mnist_arrays,
    load_mnist_tensors,
    mnist_features,
    mnist_to_tensor,
)

BUNDLED_DIR = Path(__file__).resolve().parent
BUNDLED_CHECKPOINTS = (
    "ddpm-mnist",
    "pdae-mnist",
    "ldm-mnist",
    "pdae-ldm-mnist",
    "sd-mnist",
    "pdae-sd-mnist",
    "dit-mnist",
    "pdae-dit-mnist",
)


def checkpoint_path(name: str) -> str:
    """The folder of a bundled checkpoint (one of `BUNDLED_CHECKPOINTS`: `"ddpm-mnist"`, `"pdae-mnist"`, ...), ready
    for `from_pretrained`.

    Raises:
        `ValueError`: for a name that is not bundled (the message lists those that are).
        `FileNotFoundError`: if the package was installed without its data.
    """
    if name not in BUNDLED_CHECKPOINTS:
        raise ValueError(f"No bundled checkpoint named {name!r}; bundled: {', '.join(BUNDLED_CHECKPOINTS)}.")
    folder = BUNDLED_DIR / name
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"The bundled checkpoint {name!r} is missing from {folder}: the package was installed without its data. "
            "Reinstall diffusers-pdae from a checkout (`pip install .`), which ships it."
        )
    return str(folder)


__all__ = [
    "BUNDLED_CHECKPOINTS",
    "MNIST_CLASS_NAMES",
    "MNIST_IMAGE_SIZE",
    "MNIST_SPLITS",
    "checkpoint_path",
    "load_mnist",
    "load_mnist_arrays",
    "load_mnist_tensors",
    "mnist_features",
    "mnist_to_tensor",
]
