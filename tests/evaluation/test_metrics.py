"""MSE, PSNR and SSIM against values computed by hand and against the hand-written implementation they replaced."""

import math

import numpy as np
import pytest
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


def test_psnr_of_a_known_noise_level():
    # +-0.05 in a checkerboard: MSE exactly 0.05^2, PSNR = -20 log10(0.05) = 26.0206 dB.
    references = torch.full((3, 1, 32, 32), 0.5)
    signs = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2 - 1
    images = references + 0.05 * signs
    assert torch.allclose(psnr(images, references), torch.full((3,), 26.0206), atol=1e-3)
    # Gaussian noise of standard deviation 0.05 gives the same PSNR on average (262,144 pixels: within 0.05 dB).
    noise = 0.05 * torch.randn(256, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert abs(psnr(references[:1] + noise, references[:1].expand(256, -1, -1, -1)).mean().item() - 26.0206) < 0.05


def test_psnr_of_identical_images_is_capped():
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(psnr(images, images), torch.full((2,), 100.0))  # 10 log10(1 / eps), eps = 1e-10
    assert torch.equal(psnr(images, images, eps=1e-6), torch.full((2,), 60.0))


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


# The values below were printed by the package's previous, hand-written PSNR (10 log10(1 / (MSE + 1e-10)) in float32)
# and SSIM (float64 Gaussian-window convolutions over the valid positions), replaced by torchmetrics in issue 26, on
# exactly these seeded inputs, rounded to 6 decimals. On 64 bundled-pipeline reconstructions of test digits (20 steps,
# with and without inversion) the two implementations differed by at most 3.8e-6 dB (PSNR) and 1.2e-6 (SSIM).
def test_agrees_with_the_previous_implementation_on_grey_images():
    generator = torch.Generator().manual_seed(0)
    references = torch.rand(4, 1, 32, 32, generator=generator)
    images = (0.8 * references + 0.2 * torch.rand(4, 1, 32, 32, generator=generator)).clamp(0, 1)
    previous_psnr = torch.tensor([21.592857, 21.69264, 22.162796, 21.508999])
    previous_ssim = torch.tensor([0.95331, 0.95, 0.951041, 0.950076])
    assert torch.allclose(psnr(images, references), previous_psnr, rtol=0, atol=1e-4)
    assert torch.allclose(ssim(images, references), previous_ssim, rtol=0, atol=1e-4)


def test_agrees_with_the_previous_implementation_on_colour_images():
    generator = torch.Generator().manual_seed(1)
    references = torch.rand(2, 3, 24, 24, generator=generator)
    images = (references + 0.1 * torch.randn(2, 3, 24, 24, generator=generator)).clamp(0, 1)
    assert torch.allclose(psnr(images, references), torch.tensor([20.55521, 20.41193]), rtol=0, atol=1e-4)
    assert torch.allclose(ssim(images, references), torch.tensor([0.945672, 0.945008]), rtol=0, atol=1e-4)


def test_ssim_rejects_a_window_it_cannot_use():
    images = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="window_size=7 does not match sigma=1.5"):
        ssim(images, images, window_size=7)
    assert torch.allclose(ssim(images, images, window_size=7, sigma=0.9), torch.ones(1), atol=1e-6)
    with pytest.raises(ValueError, match="smaller than the 11-pixel window"):
        ssim(images[..., :10, :10], images[..., :10, :10])
