"""Checks of the autoencoder pipelines' arguments, run before any denoising starts: each raises a `ValueError` (or
`TypeError`) that names the argument and says what is allowed, instead of a wrong number or a failure deep inside the
loop. The components are checked in `component_checks`."""

from __future__ import annotations

import math
import numbers

import torch

from ..models.frozen_denoiser import FrozenDenoiser

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_num_inference_steps(num_inference_steps, num_train_timesteps: int) -> int:
    """An integer in [1, num_train_timesteps]."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral):
        raise TypeError(
            f"num_inference_steps must be an integer in [1, {num_train_timesteps}], got {num_inference_steps!r} "
            f"({type(num_inference_steps).__name__})."
        )
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must lie in [1, {num_train_timesteps}] (the schedule's training steps), got "
            f"{num_inference_steps}."
        )
    return int(num_inference_steps)


def check_eta(eta) -> float:
    """DDIM's eta, a number in [0, 1]."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}.")
    return float(eta)


def check_shift_range(shift_range, num_train_timesteps: int) -> tuple[int, int] | None:
    """None, or `(t1, t2)` integer training timesteps with 0 <= t1 <= t2 < T."""
    if shift_range is None:
        return None
    valid = (
        isinstance(shift_range, (tuple, list))
        and len(shift_range) == 2
        and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in shift_range)
        and 0 <= shift_range[0] <= shift_range[1] < num_train_timesteps
    )
    if not valid:
        raise ValueError(
            f"shift_range must be a pair (t1, t2) of training timesteps with 0 <= t1 <= t2 < {num_train_timesteps} "
            f"(e.g. (400, 700)), got {shift_range!r}."
        )
    return int(shift_range[0]), int(shift_range[1])


def check_output_type(output_type, allowed: tuple[str, ...] = OUTPUT_TYPES) -> str:
    """One of `allowed`."""
    if output_type not in allowed:
        raise ValueError(f"output_type must be one of {', '.join(map(repr, allowed))}, got {output_type!r}.")
    return output_type


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """An integer >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"{name} must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def check_callback_inputs(callback, tensor_inputs: list[str], allowed: list[str]) -> list[str]:
    """A callable (or None) and tensor names among `allowed`, as diffusers' pipelines check them."""
    if callback is not None and not callable(callback):
        raise ValueError(f"callback_on_step_end must be callable, got {type(callback).__name__}.")
    unknown = [name for name in tensor_inputs if name not in allowed]
    if unknown:
        raise ValueError(
            f"callback_on_step_end_tensor_inputs may name {allowed}, got {unknown}; these tensors are not available."
        )
    return list(tensor_inputs)


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """`tensor` with values (not on the meta device), none of them NaN or infinite."""
    if tensor.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it has a shape but no values; pass a tensor with data.")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        count = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} has {count} NaN or infinite values; pass finite numbers.")
    return tensor


def check_codes(z, latent_dim: int, batch_size: int | None = None, name: str = "z") -> torch.Tensor:
    """Codes of shape `(batch_size, latent_dim)`, floating point and finite; a list of `(latent_dim,)` or
    `(n, latent_dim)` tensors (as from several `encode` calls) is concatenated."""
    codes = z if isinstance(z, (list, tuple)) else ()
    if codes and all(isinstance(code, torch.Tensor) and code.ndim in (1, 2) for code in codes):
        widths = sorted({code.shape[-1] for code in codes})
        if widths != [latent_dim]:
            raise ValueError(
                f"{name} is a list of codes of widths {widths}; every code must have width {latent_dim}, as "
                "pipe.encode returns them."
            )
        z = torch.cat([code.reshape(-1, latent_dim) for code in codes])
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != latent_dim:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z)
        raise ValueError(
            f"{name} must be a tensor of shape (batch_size, {latent_dim}) as returned by pipe.encode, got {shape}."
        )
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}.")
    if z.shape[0] == 0:
        raise ValueError(f"{name} holds no code (shape {tuple(z.shape)}); pass at least one.")
    if batch_size is not None and z.shape[0] != batch_size:
        raise ValueError(f"{name} has {z.shape[0]} codes but there are {batch_size} images or latents.")
    return check_finite(z, name)


def check_latents(latents, sample_shape: tuple[int, ...], image_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """x_T of shape `(B, *sample_shape)` with B >= 1, finite; for a latent DPM, pixel images where latents belong are
    named as such."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or tuple(latents.shape[1:]) != sample_shape:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        hint = ""
        if image_shape not in (None, sample_shape) and isinstance(latents, torch.Tensor):
            if tuple(latents.shape[1:]) == image_shape:
                hint = (
                    " That is the size of this latent pipeline's pixel images: latents (x_T) live in the "
                    "autoencoder's latent space, as pipe.invert returns them."
                )
        raise ValueError(
            f"latents must have shape (batch_size, {', '.join(map(str, sample_shape))}), got {shape}.{hint}"
        )
    if latents.shape[0] == 0:
        raise ValueError("latents holds no sample (batch size 0).")
    return check_finite(latents, "latents")


def available_memory(device: torch.device) -> int | None:
    """Bytes free on `device` now (None where unknown): the accelerator's free memory, or the host's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_sample_count(total: int, denoiser: FrozenDenoiser, device: torch.device, requested: str) -> None:
    """Refuse a batch whose smallest working set cannot fit in the device's free memory, before allocating it.

    Args:
        total: samples decoded at once.
        denoiser: the frozen model that denoises them (its `bytes_per_sample`: a few full-resolution feature maps).
        device: where it runs.
        requested: the arguments that set `total`, for the message.
    """
    needed = total * denoiser.bytes_per_sample()
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(
            f"{requested} asks for {total:,} samples at once, which need at least {needed / 2**30:.1f} GiB on "
            f"{device.type}, where {free / 2**30:.1f} GiB are free; decode fewer at a time."
        )


def check_callback_outputs(outputs, previous: dict) -> dict:
    """What a `callback_on_step_end` returned: None or a dict whose tensors keep the shape of those they replace
    and hold finite values."""
    if outputs is None:
        return {}
    if not isinstance(outputs, dict):
        raise ValueError(
            f"callback_on_step_end must return a dict of the tensors it replaces (or None), got "
            f"{type(outputs).__name__}."
        )
    for name, value in outputs.items():
        if name not in previous:
            continue
        before = previous[name]
        if before is not None and (not isinstance(value, torch.Tensor) or value.shape != before.shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"callback_on_step_end returned {name!r} of shape {got}; it must keep the shape {tuple(before.shape)}."
            )
        if isinstance(value, torch.Tensor):
            check_finite(value, f"{name!r} returned by callback_on_step_end")
    return outputs


def check_not_latents(images, image_shape: tuple[int, ...], sample_shape: tuple[int, ...]) -> None:
    """For a latent DPM: an image tensor shaped like the diffusion latents, where pixel images belong, is named."""
    if isinstance(images, torch.Tensor) and tuple(images.shape[-3:]) == sample_shape:
        raise ValueError(
            f"images of shape {tuple(images.shape)} have the shape of this latent pipeline's diffusion latents; the "
            f"methods take pixel images (B, {', '.join(map(str, image_shape))}) and encode them with the autoencoder "
            "themselves (latents go to `latents=` or `decode`)."
        )


def check_generator(generator, batch_size: int) -> None:
    """None, one `torch.Generator`, or a list of exactly `batch_size` of them."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)) or not all(isinstance(g, torch.Generator) for g in generator):
        raise TypeError(f"generator must be a torch.Generator or a list of them, got {type(generator).__name__}.")
    if len(generator) != batch_size:
        raise ValueError(
            f"generator is a list of {len(generator)} generators but the batch has {batch_size} samples; pass one "
            "generator per sample, or a single generator."
        )


def check_timesteps(timesteps: torch.Tensor, num_train_timesteps: int) -> None:
    """Training timesteps in [0, T) (fractional ones are fine: Euler-type schedulers use them)."""
    values = timesteps.detach()
    if values.numel() == 0 or values.min() < 0 or values.max() >= num_train_timesteps:
        raise ValueError(
            f"timestep must hold training timesteps in [0, {num_train_timesteps}), got {values.tolist()}."
        )


def check_interpolation_count(num) -> int:
    """At least two frames (the two ends)."""
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 2:
        raise ValueError(f"num must be an integer >= 2 (the first and last frames are the two images), got {num!r}.")
    return int(num)


def check_scales(scales) -> list[float]:
    """A non-empty list of finite numbers."""
    values = scales.tolist() if isinstance(scales, torch.Tensor) else scales
    if isinstance(values, numbers.Real):
        values = [values]
    valid = (
        isinstance(values, (list, tuple))
        and len(values) > 0
        and all(isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) for s in values)
    )
    if not valid:
        raise ValueError(f"scales must be a non-empty list of finite numbers (0 reconstructs), got {scales!r}.")
    return [float(s) for s in values]


def check_safe_serialization(safe_serialization: bool) -> None:
    """Our pipelines write (and read) safetensors only: a folder of pickled `.bin` weights would be one they refuse to
    load."""
    if not safe_serialization:
        raise ValueError(
            "safe_serialization=False would write pickled .bin weights, which this pipeline never loads (pickles can "
            "run code); save with safe_serialization=True, the default."
        )
