"""A training set whose latents (for PDAE on a latent DPM) are encoded once by the frozen autoencoder, instead of at
every step (`train_pdae.py --cache_latents`)."""

from __future__ import annotations

import random

import torch
from diffusers import ModelMixin
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..latent_space import latent_moments


class CachedLatentDataset(Dataset):
    """The items of `dataset` (`{"pixel_values": (C, H, W), ...}`, made without random flips) with `"latents"`: the
    frozen autoencoder's latents of their pixels, computed once.

    With `random_flip`, each item is flipped here (p = 0.5, as the image datasets flip) and the latents of the
    flipped image are returned, both orientations having been encoded: the latents of a mirrored image are not the
    mirrored latents. An `AutoencoderKL` keeps its posterior's mean and standard deviation (`"latent_std"`), so a
    fresh posterior sample can be drawn each step, as encoding on the fly would draw it.

    Args:
        dataset: the training items, deterministic (no random crops or flips).
        vae (`VQModel` or `AutoencoderKL`): the frozen autoencoder, on the device it should run on.
        random_flip (`bool`): flip items horizontally with p = 0.5.
        batch_size (`int`, defaults to 64): images per autoencoder call while caching.
        show_progress (`bool`, defaults to `True`): a progress bar while caching.
    """

    def __init__(
        self, dataset: Dataset, vae: ModelMixin, random_flip: bool, batch_size: int = 64, show_progress: bool = True
    ):
        self.dataset, self.random_flip = dataset, random_flip
        orientations = (False, True) if random_flip else (False,)
        self.latents: dict[bool, torch.Tensor] = {}
        self.stds: dict[bool, torch.Tensor] = {}
        with tqdm(total=len(dataset) * len(orientations), desc="caching latents", disable=not show_progress) as bar:
            for flipped in orientations:
                means, stds = [], []
                for start in range(0, len(dataset), batch_size):
                    pixels = torch.stack(
                        [dataset[i]["pixel_values"] for i in range(start, min(start + batch_size, len(dataset)))]
                    )
                    pixels = (pixels.flip(-1) if flipped else pixels).to(vae.device, vae.dtype)
                    mean, std = latent_moments(vae, pixels)
                    means.append(mean.float().cpu())
                    stds.append(std.float().cpu() if std is not None else None)
                    bar.update(len(pixels))
                self.latents[flipped] = torch.cat(means)
                if stds[0] is not None:
                    self.stds[flipped] = torch.cat(stds)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        flipped = self.random_flip and random.random() < 0.5
        if flipped:
            item["pixel_values"] = item["pixel_values"].flip(-1)
        item["latents"] = self.latents[flipped][index]
        if self.stds:
            item["latent_std"] = self.stds[flipped][index]
        return item
