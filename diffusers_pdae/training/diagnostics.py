"""What each process of a run saw, to check that a multi-process run really is distributed (`--report_ranks`)."""

from __future__ import annotations

import hashlib
import json
import os

import torch
from accelerate import Accelerator

from .checkpointing import unwrap_model


class RankReport:
    """What one process saw and ended with.

    Each process records a fingerprint of every batch it trained on, and of every example by epoch (to check that no
    two processes, nor one process twice, train on an example in a pass) and, at the end, a checksum of its models'
    weights, its distributed type and the number of processes, in `output_dir/ranks/rank-{i}.json`.
    """

    def __init__(self):
        self.batch_fingerprints: list[str] = []
        self.example_fingerprints: dict[int, list[str]] = {}

    def add_batch(self, pixel_values: torch.Tensor, epoch: int = 0) -> None:
        self.batch_fingerprints.append(_fingerprint([pixel_values]))
        self.example_fingerprints.setdefault(epoch, []).extend(_fingerprint([example]) for example in pixel_values)

    def write(self, accelerator: Accelerator, models: list[torch.nn.Module], output_dir: str) -> None:
        weights = [tensor for model in models for tensor in unwrap_model(accelerator, model).state_dict().values()]
        report = {
            "process_index": accelerator.process_index,
            "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1],
            "batch_fingerprints": self.batch_fingerprints,
            "example_fingerprints": self.example_fingerprints,
            "weights_checksum": _fingerprint(weights),
        }
        os.makedirs(os.path.join(output_dir, "ranks"), exist_ok=True)
        with open(os.path.join(output_dir, "ranks", f"rank-{accelerator.process_index}.json"), "w") as f:
            json.dump(report, f, indent=1)


def _fingerprint(tensors: list[torch.Tensor]) -> str:
    """First 16 hex digits of the SHA-256 of the tensors' float32 bytes, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
