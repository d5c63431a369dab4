"""MSE, PSNR and SSIM against values computed by hand."""

import math

import numpy as np
import torch

from diffusers_pdae.evaluation import mse, psnr, ssim


def test_mse_and_psnr_of_a_tiny_image():
    references = torch.zeros(1, 1, 2, 2)
    images = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    expected_mse = (0.01 + 0.04 + 0.09 + 0.16) / 4  # 0.075
    assert torch.allclose(mse(images, references), torch.tensor([expected_mse]))
    assert torch.allclose(psnr(images, references), torch.tensor([10 * math.log10(1 / expected_mse)]), atol=1e-4)


def test_psnr_per_image_and_symmetric():
    references = torch.full((2, 1, 4, 4), 0.5)
    images = references.clone()
    images[0] += 0.1  # MSE 0.01 -> 20 dB
    images[1] -= 0.01  # MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr(images, references), torch.tensor([20.0, 40.0]), atol=1e-3)
    assert torch.allclose(psnr(references, images), psnr(images, references))


def test_ssim_of_identical_images_is_one():
    images = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(images, images), torch.ones(3), atol=1e-6)


def test_ssim_of_constant_images_has_its_closed_form():
    # No variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) at every position, C1 = (0.01 * 1)^2.
    a, b, c1 = 0.5, 0.25, 1e-4
    images, references = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # 0.80006...
    assert abs(ssim(images, references).item() - expected) < 1e-6


def test_ssim_of_one_window_by_explicit_weighted_sums():
    # An 11x11 image has exactly one valid window: compute its SSIM with explicit Gaussian-weighted sums.
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(11, 11, generator=generator, dtype=torch.float64)
    y = (0.7 * x + 0.2 * torch.rand(11, 11, generator=generator, dtype=torch.float64)).clamp(0, 1)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    xn, yn = x.numpy(), y.numpy()
    mu_x, mu_y = (w * xn).sum(), (w * yn).sum()
    var_x, var_y = (w * xn**2).sum() - mu_x**2, (w * yn**2).sum() - mu_y**2
    cov = (w * xn * yn).sum() - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    measured = ssim(x[None, None].float(), y[None, None].float()).item()
    assert abs(measured - expected) < 1e-5
    assert 0.5 < expected < 1.0  # a real, non-trivial value
