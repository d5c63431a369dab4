"""Fixed, seeded, class-balanced subsets of a labelled split, so that every evaluation scores the same digits."""

from __future__ import annotations

import numpy as np
import torch


def stratified_indices(labels: np.ndarray | torch.Tensor, count: int, seed: int = 0) -> np.ndarray:
    """Indices of `count` samples spread evenly over the classes.

    Each class's indices are shuffled with a seeded `torch.Generator`, then the classes are visited round-robin
    (0, 1, ..., 9, 0, 1, ...), skipping exhausted ones. The result keeps that order, so any prefix is balanced too
    (the first 10 indices of MNIST labels hold one digit of each class, handy for image grids).

    Args:
        labels (`np.ndarray` or `torch.Tensor` of shape `(N,)`): integer class labels.
        count (`int`): how many indices to return; at most `N` (`count >= N` returns a permutation of all).
        seed (`int`, defaults to 0): seed of the shuffles.

    Returns:
        `np.ndarray` of shape `(min(count, N),)`, int64.
    """
    labels = np.asarray(labels)
    generator = torch.Generator().manual_seed(seed)
    per_class = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        per_class.append(list(members[torch.randperm(len(members), generator=generator).numpy()]))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(count, len(labels)):
        for members in per_class:
            if depth < len(members) and len(chosen) < count:
                chosen.append(members[depth])
        depth += 1
    return np.asarray(chosen, dtype=np.int64)
