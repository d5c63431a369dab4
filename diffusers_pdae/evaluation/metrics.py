"""Image metrics: MSE, PSNR and SSIM on images in [0, 1], per image. PSNR and SSIM are torchmetrics' own.

torchmetrics is imported on first use: it loads all of its domains (audio, text, ...), about a second on 2 CPU cores
beyond what `import diffusers_pdae.evaluation` (and the app, through `interactive`) loads already.
"""

from __future__ import annotations

import math

import torch


def mse(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image. Inputs `(B, C, H, W)` in [0, 1]; returns `(B,)`."""
    return (images.float() - references.float()).pow(2).flatten(1).mean(dim=1)


def psnr(images: torch.Tensor, references: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (peak 1). Inputs `(B, C, H, W)` in [0, 1]; returns `(B,)`.

    Capped at `10 log10(1 / eps)` dB (100 dB by default), so identical images give a finite value and a mean over
    images stays finite.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = images.float(), references.float()
    scores = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=tuple(range(1, x.ndim)))
    return scores.clamp(max=10 * math.log10(1 / eps))


def ssim(
    images: torch.Tensor,
    references: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, Gaussian window 11 / sigma 1.5, valid positions only.

    Inputs `(B, C, H, W)` in [0, `data_range`] with H and W at least `window_size`; returns `(B,)`, the mean SSIM
    map over channels and positions (K1 = 0.01, K2 = 0.03). Computed in float32 by torchmetrics, which sizes the
    Gaussian window from `sigma` (`2 * int(3.5 * sigma + 0.5) + 1`), so `window_size` must be that size.
    """
    if window_size != 2 * int(3.5 * sigma + 0.5) + 1:
        raise ValueError(
            f"window_size={window_size} does not match sigma={sigma}: torchmetrics uses a Gaussian window of "
            f"2 * int(3.5 * sigma + 0.5) + 1 = {2 * int(3.5 * sigma + 0.5) + 1} pixels."
        )
    if min(images.shape[-2:]) < window_size:
        raise ValueError(f"Images of size {tuple(images.shape[-2:])} are smaller than the {window_size}-pixel window.")
    # torchmetrics pads the images by reflection and, since its PR #2721 (2024), averages the SSIM map over every
    # pixel, border windows that are partly mirrored image included; on the bundled MNIST reconstructions that moves
    # scores by up to 0.26. We keep the valid positions (windows inside the image: Wang et al., scikit-image, this
    # package before torchmetrics, torchmetrics before that PR): the full map, with the half-window border cropped.
    # float32 rather than float64: within 1.2e-6 of the float64 values on the bundled reconstructions, and 3-4 times
    # faster than the float64 convolutions we used before (256 images 32x32 on one CPU thread: 0.19 s against 0.67 s).
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = images.float(), references.float()
    _, ssim_map = structural_similarity_index_measure(
        x, y, sigma=sigma, data_range=data_range, reduction="none", return_full_image=True
    )
    half = window_size // 2
    return ssim_map[..., half:-half, half:-half].flatten(1).mean(dim=1)
