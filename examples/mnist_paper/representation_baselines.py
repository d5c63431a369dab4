"""Representation baselines for the linear probe, trained here on the train split in CPU minutes.

- PCA with as many components as PDAE's code;
- a plain convolutional autoencoder and a VAE (its posterior means are the codes) with the same code width;
- codes any `PDAEPipeline` gives for free: PDAE's z (`pdae_codes`) and the DDIM-inverted x_T of the frozen DPM
  without z (`ddim_inverted_codes`).

All images are the library's `(N, 1, 32, 32)` tensors in [-1, 1]; codes are `(N, width)` float32 tensors.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from torch import nn
from tqdm.auto import tqdm

from diffusers_pdae import PDAEPipeline


def pca_codes(
    train_images: torch.Tensor, test_images: torch.Tensor, width: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project flattened images on the top `width` principal components of the train images.

    Returns:
        `(train_codes (N_train, width), test_codes (N_test, width))`.
    """
    pca = PCA(n_components=width, svd_solver="full", random_state=seed)
    train = pca.fit_transform(train_images.flatten(1).numpy())
    test = pca.transform(test_images.flatten(1).numpy())
    return torch.from_numpy(train).float(), torch.from_numpy(test).float()


class ConvAutoencoder(nn.Module):
    """A plain convolutional autoencoder for `(B, 1, 32, 32)` images with a flat `latent_dim` bottleneck.

    Encoder: three 4x4 stride-2 convolutions (32 -> 16 -> 8 -> 4 pixels, `channels` wide), SiLU, one linear layer to
    the code. Decoder: the mirror image with transposed convolutions; it returns logits of pixel intensities in
    [0, 1] (trained with binary cross-entropy against `(x + 1) / 2`).
    """

    def __init__(self, latent_dim: int = 64, channels: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = channels
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1),  # (B, c1, 16, 16)
            nn.SiLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # (B, c2, 8, 8)
            nn.SiLU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1),  # (B, c3, 4, 4)
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(c3 * 16, self.encoder_outputs()),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, c3 * 16),
            nn.Unflatten(1, (c3, 4, 4)),
            nn.SiLU(),
            nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1),  # (B, c2, 8, 8)
            nn.SiLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),  # (B, c1, 16, 16)
            nn.SiLU(),
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # (B, 1, 32, 32) logits
        )

    def encoder_outputs(self) -> int:
        return self.latent_dim

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Codes `(B, latent_dim)` of images `(B, 1, 32, 32)` in [-1, 1]."""
        return self.encoder(images)

    def loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean per-pixel binary cross-entropy of the reconstruction, a scalar."""
        logits = self.decoder(self.encode(images))
        return F.binary_cross_entropy_with_logits(logits, (images + 1) / 2)


class ConvVAE(ConvAutoencoder):
    """A VAE with the same networks (the encoder outputs a mean and a log-variance); codes are posterior means.

    Loss: the negative ELBO per image, Bernoulli likelihood of `(x + 1) / 2` summed over pixels plus
    KL(q(z|x) || N(0, I)), averaged over the batch.
    """

    def encoder_outputs(self) -> int:
        return 2 * self.latent_dim

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z|x), each `(B, latent_dim)`."""
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance.clamp(-20.0, 10.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.posterior(images)[0]

    def loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_variance = self.posterior(images)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        logits = self.decoder(mean + (0.5 * log_variance).exp() * noise)
        reconstruction = F.binary_cross_entropy_with_logits(logits, (images + 1) / 2, reduction="none")
        kl = 0.5 * (mean**2 + log_variance.exp() - 1.0 - log_variance).sum(dim=1)
        return (reconstruction.flatten(1).sum(dim=1) + kl).mean()


def build_seeded(model_class: type[nn.Module], seed: int, **kwargs) -> nn.Module:
    """Instantiate `model_class(**kwargs)` with weights drawn from `seed`, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(**kwargs)


def train_autoencoder(
    model: ConvAutoencoder,
    images: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    max_seconds: float | None = None,
) -> list[float]:
    """Train `model` with Adam on images `(N, 1, 32, 32)` in [-1, 1] (seeded shuffles and VAE noise).

    Stops after `epochs` epochs or, if given, once `max_seconds` have passed (checked after every step).

    Returns:
        `list[float]`: the mean loss of each epoch run (the last one possibly partial).
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    started = time.perf_counter()
    epoch_losses = []
    model.train()
    for _ in tqdm(range(epochs), desc=f"train {type(model).__name__}", leave=False):
        order = torch.randperm(len(images), generator=generator)
        losses = []
        for start in range(0, len(images), batch_size):
            loss = model.loss(images[order[start : start + batch_size]], generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                break
        epoch_losses.append(float(np.mean(losses)))
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    model.eval()
    return epoch_losses


@torch.no_grad()
def autoencoder_codes(model: ConvAutoencoder, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Codes `(N, latent_dim)` (VAE: posterior means) of images `(N, 1, 32, 32)` in [-1, 1]."""
    model.eval()
    return torch.cat([model.encode(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def pdae_codes(pipeline: PDAEPipeline, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """PDAE's codes z `(N, latent_dim)` of images `(N, 1, 32, 32)` in [-1, 1]."""
    return torch.cat(
        [pipeline.encode(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)]
    )


@torch.no_grad()
def ddim_inverted_codes(
    pipeline: PDAEPipeline, images: torch.Tensor, num_inference_steps: int = 20, batch_size: int = 250
) -> torch.Tensor:
    """x_T of plain DDIM inversion of the frozen DPM (no z), flattened: `(N, C * H * W)`."""
    codes = []
    for start in tqdm(range(0, len(images), batch_size), desc="DDIM inversion (x_T codes)", leave=False):
        x_T = pipeline.invert(
            images[start : start + batch_size], num_inference_steps=num_inference_steps, apply_shift=False
        )
        codes.append(x_T.float().cpu().flatten(1))
    return torch.cat(codes)
