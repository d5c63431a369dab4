"""Image metrics: MSE, PSNR and SSIM on images in [0, 1], per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image. Inputs `(B, C, H, W)` in [0, 1]; returns `(B,)`."""
    return (images.float() - references.float()).pow(2).flatten(1).mean(dim=1)


def psnr(images: torch.Tensor, references: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (peak 1). Inputs `(B, C, H, W)` in [0, 1]; returns `(B,)`."""
    return 10 * torch.log10(1.0 / (mse(images, references) + eps))


def _gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel_1d = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    return (kernel_1d[:, None] * kernel_1d[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    images: torch.Tensor,
    references: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, Gaussian window 11 / sigma 1.5, valid positions only.

    Inputs `(B, C, H, W)` in [0, `data_range`]; returns `(B,)`, the mean SSIM map over channels and positions
    (K1 = 0.01, K2 = 0.03). Computed in float64.
    """
    x, y = images.double(), references.double()
    channels = x.shape[1]
    window = _gaussian_window(window_size, sigma, channels).to(x.device)

    def blur(tensor: torch.Tensor) -> torch.Tensor:
        return F.conv2d(tensor, window, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).float()
