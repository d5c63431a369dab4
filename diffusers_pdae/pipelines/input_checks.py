"""Checks of the autoencoder pipelines' arguments, components and folders, run before any denoising starts: each
raises a `ValueError` (or `TypeError`, `FileNotFoundError`) that names the argument, component or file and says what
is allowed, instead of a wrong number or a failure deep inside the loop."""

from __future__ import annotations

import json
import math
import numbers
import os

import torch
from diffusers import ModelMixin, UNet2DModel
from diffusers.schedulers import SchedulerMixin

from ..sampling import check_scheduler, has_discrete_schedule

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
    """`tensor` with no NaN or infinite entry."""
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        count = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} has {count} NaN or infinite values; pass finite numbers.")
    return tensor


def check_codes(z, latent_dim: int, batch_size: int | None = None, name: str = "z") -> torch.Tensor:
    """Codes of shape `(batch_size, latent_dim)`, floating point and finite; a list of `(latent_dim,)` or
    `(n, latent_dim)` tensors (as from several `encode` calls) is concatenated."""
    codes = z if isinstance(z, (list, tuple)) else ()
    if codes and all(isinstance(code, torch.Tensor) and code.ndim in (1, 2) for code in codes):
        if len({code.shape[-1] for code in codes}) == 1:
            z = torch.cat([code.reshape(-1, code.shape[-1]) for code in codes])
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != latent_dim:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z)
        raise ValueError(
            f"{name} must be a tensor of shape (batch_size, {latent_dim}) as returned by pipe.encode, got {shape}."
        )
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}.")
    if batch_size is not None and z.shape[0] != batch_size:
        raise ValueError(f"{name} has {z.shape[0]} codes but there are {batch_size} images or latents.")
    return check_finite(z, name)


def check_latents(latents, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """x_T of shape `(B, *sample_shape)` with B >= 1, finite."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or tuple(latents.shape[1:]) != sample_shape:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must have shape (batch_size, {', '.join(map(str, sample_shape))}), got {shape}.")
    if latents.shape[0] == 0:
        raise ValueError("latents holds no sample (batch size 0).")
    return check_finite(latents, "latents")


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


def check_pipeline_folder(
    folder: str, components: tuple[str, ...], pipeline_name: str = "pipeline", optional: tuple[str, ...] = ()
) -> None:
    """Before `from_pretrained` reads a local pipeline folder: say which component or file is missing.

    Args:
        folder: the pipeline folder.
        components: subfolders that must exist, each with its config (`scheduler_config.json` for schedulers,
            `config.json` for models) and, for models, safetensors weights.
        pipeline_name: the class that loads it, for the messages.
        optional: components that may be absent (or null in `model_index.json`).

    Raises:
        `FileNotFoundError`: naming the missing piece.
    """
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(f"{folder} is not a pipeline folder: it has no model_index.json.")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{index_path} is not valid JSON ({error}); the pipeline folder is damaged.") from error
    for name in components + optional:
        entry = index.get(name)
        if entry is None or entry == [None, None]:
            if name in optional:
                continue
            needed = ", ".join(components)
            raise FileNotFoundError(f"{index_path} lists no {name!r}; a {pipeline_name} needs {needed}.")
        subfolder = os.path.join(folder, name)
        config = "scheduler_config.json" if "Scheduler" in str(entry[1]) else "config.json"
        if not os.path.isfile(os.path.join(subfolder, config)):
            raise FileNotFoundError(f"The pipeline's {name} is missing: no {config} in {subfolder}.")
        if config == "config.json":
            weights = [
                file
                for file in os.listdir(subfolder)
                if file.startswith("diffusion_pytorch_model") and file.endswith(".safetensors")
            ]
            if not weights:
                raise FileNotFoundError(
                    f"The pipeline's {name} has no weights: no diffusion_pytorch_model.safetensors in {subfolder} "
                    "(weights are read from safetensors only)."
                )
            for file in weights:
                check_safetensors_file(os.path.join(subfolder, file))


def check_safetensors_file(path: str) -> None:
    """Read a safetensors file's header (not its tensors) and check the file holds all the bytes it announces.

    Raises:
        `ValueError`: naming the file when it is not safetensors (e.g. a git-lfs pointer), or truncated.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(64).startswith(b"version https://git-lfs"):
            raise ValueError(f"{path} is a git-lfs pointer, not the weights: run `git lfs pull` in the checkout.")
        f.seek(0)
        start = f.read(8)
        header_size = int.from_bytes(start, "little") if len(start) == 8 else -1
        header = f.read(header_size) if 0 < header_size <= size - 8 else b""
    try:
        entries = json.loads(header)
        data_end = max(
            (entry["data_offsets"][1] for key, entry in entries.items() if key != "__metadata__"), default=0
        )
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(
            f"{path} is not a safetensors file (its header cannot be read); the file is damaged."
        ) from None
    if 8 + header_size + data_end > size:
        raise ValueError(
            f"{path} is truncated: its header announces {8 + header_size + data_end} bytes, the file has {size}."
        )


def check_no_missing_components(pipeline_name: str, components: dict) -> None:
    """Every named component is given (not None)."""
    missing = [name for name, component in components.items() if component is None]
    if missing:
        raise ValueError(
            f"{pipeline_name} is missing {', '.join(missing)}; it needs {', '.join(components)} (a saved pipeline "
            "folder has one subfolder for each)."
        )


def config_mismatches(first: tuple[str, ModelMixin], second: tuple[str, ModelMixin], keys: tuple[str, ...]) -> list:
    """`"key: first a vs second b"` for each config entry in `keys` on which two named models disagree."""
    (first_name, first_model), (second_name, second_model) = first, second
    return [
        f"{key}: {first_name} {first_model.config[key]!r} vs {second_name} {second_model.config[key]!r}"
        for key in keys
        if first_model.config[key] != second_model.config[key]
    ]


def check_pdae_components(
    unet: UNet2DModel, scheduler: SchedulerMixin, encoder: ModelMixin, gradient_estimator: ModelMixin
) -> None:
    """`PDAEPipeline`'s four components are there, the scheduler can be served, and the encoder and G fit the
    UNet (G's layout and noise schedule, the encoder's image size, channels and code width)."""
    components = {"unet": unet, "scheduler": scheduler, "encoder": encoder, "gradient_estimator": gradient_estimator}
    check_no_missing_components("PDAEPipeline", components)
    check_scheduler(scheduler)
    gradient_estimator.check_compatible(unet)
    gradient_estimator.check_schedule(scheduler)
    mismatches = config_mismatches(("UNet", unet), ("encoder", encoder), ("in_channels", "sample_size"))
    mismatches += config_mismatches(("encoder", encoder), ("gradient_estimator", gradient_estimator), ("latent_dim",))
    if mismatches:
        raise ValueError(
            "The encoder does not fit the UNet and gradient estimator (" + "; ".join(mismatches) + "). Build the "
            "encoder with the UNet's in_channels and sample_size and the estimator's latent_dim."
        )


def check_latent_sampler(latent_sampler: ModelMixin | None, latent_scheduler: SchedulerMixin | None, latent_dim: int):
    """The optional latent sampler and its scheduler come together and fit the codes."""
    if latent_sampler is None and latent_scheduler is None:
        return
    if latent_sampler is None or latent_scheduler is None:
        given, missing = ("latent_sampler", "latent_scheduler")[:: 1 if latent_scheduler is None else -1]
        raise ValueError(f"{given} is given without {missing}; pass both (or neither).")
    if latent_sampler.config.latent_dim != latent_dim:
        raise ValueError(
            f"The latent sampler makes codes of width {latent_sampler.config.latent_dim} but the encoder's are "
            f"{latent_dim}; train the sampler on this pipeline's codes."
        )
    if latent_scheduler.config.get("clip_sample", False):
        raise ValueError(
            "The latent scheduler clips samples to [-1, 1], which normalised codes exceed; build it with "
            "clip_sample=False."
        )
    if latent_scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError("The latent sampler predicts noise; its scheduler's prediction_type must be 'epsilon'.")


def check_diffae_components(unet: ModelMixin, encoder: ModelMixin, scheduler: SchedulerMixin) -> None:
    """`DiffAEPipeline`'s three components are there, the scheduler is a discrete noise-predicting schedule, and the
    encoder fits the conditional UNet."""
    check_no_missing_components("DiffAEPipeline", {"unet": unet, "encoder": encoder, "scheduler": scheduler})
    if not has_discrete_schedule(scheduler):
        raise ValueError(
            f"{type(scheduler).__name__} has no discrete training schedule (betas and alphas_cumprod over "
            "num_train_timesteps), which the baseline is trained and inverted with; use one that has, e.g. "
            "DDPMScheduler or DDIMScheduler."
        )
    if scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(
            f"The Diff-AE baseline predicts noise, but the scheduler's prediction_type is "
            f"{scheduler.config.prediction_type!r}; build it with prediction_type='epsilon'."
        )
    mismatches = config_mismatches(("unet", unet), ("encoder", encoder), ("in_channels", "sample_size", "latent_dim"))
    if mismatches:
        raise ValueError(
            "The encoder does not fit the conditional UNet (" + "; ".join(mismatches) + "); build both with the same "
            "image size, channels and latent_dim."
        )
