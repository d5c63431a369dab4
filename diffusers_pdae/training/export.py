"""Turn a training checkpoint (`output_dir/checkpoint-<step>`) into a pipeline folder, without resuming the run.

Each checkpoint holds the trained models (and their EMAs) and `pipeline.json`, which says what kind of pipeline it
belongs to and, for PDAE, which frozen DPM; `scheduler/` holds the training schedule.

    python examples/export_checkpoint.py pdae-run/checkpoint-500 pdae-step-500
"""

from __future__ import annotations

import json
import os

from diffusers import (
    AutoModel,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DiffusionPipeline,
    LDMPipeline,
    StableDiffusionPipeline,
)

from ..models.encoders import load_encoder
from ..models.gradient_estimators import load_gradient_estimator
from ..models.latent_sampler import LatentSampler
from ..pipelines import PDAEPipeline
from .autoencoders import load_autoencoder
from .checkpointing import PIPELINE_FILE, read_run_flags
from .objective import as_stored_components, frozen_components, load_frozen_autoencoder, load_frozen_dpm
from .text_conditioning import dit_pipeline, text_encoder_for


def _weights(folder: str, name: str, use_ema: bool) -> str:
    """The subfolder holding `name`'s weights: its EMA when kept and asked for."""
    return f"{name}_ema" if use_ema and os.path.isdir(os.path.join(folder, f"{name}_ema")) else name


def export_checkpoint(checkpoint: str, output_dir: str, use_ema: bool = True) -> DiffusionPipeline:
    """Build the pipeline a checkpoint stands for and save it to `output_dir`.

    Args:
        checkpoint: a `checkpoint-<step>` folder written by `examples/train_pdae.py`, `examples/train_dpm.py`
            (a DDPM or, with `--pretrained_vae_model_name_or_path`, an LDM) or `examples/train_latent_sampler.py`.
        output_dir: where the pipeline is saved (`from_pretrained` loads it).
        use_ema (`bool`, defaults to `True`): take the EMA weights when the run kept them (as the run's own final
            save does).

    Returns:
        The saved pipeline.

    Raises:
        `FileNotFoundError`: if `checkpoint` lacks `pipeline.json` (written by checkpoints of this version).
        `ValueError`: for a checkpoint of `examples/train_autoencoder.py`, whose release measures the latent scaling
            factor on the training images: resume it instead (see the message).
    """
    description_path = os.path.join(checkpoint, PIPELINE_FILE)
    if not os.path.isfile(description_path):
        raise FileNotFoundError(
            f"{checkpoint} has no {PIPELINE_FILE}: it is not a checkpoint of this version's training scripts."
        )
    with open(description_path) as f:
        description = json.load(f)
    scheduler_folder = os.path.join(checkpoint, "scheduler")
    if description["kind"] == "ddpm":
        unet = AutoModel.from_pretrained(checkpoint, subfolder=_weights(checkpoint, "unet", use_ema))
        pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_pretrained(scheduler_folder))
        pipeline.save_pretrained(output_dir)
        return pipeline
    if description["kind"] == "autoencoder":
        raise ValueError(
            f"{checkpoint} is a checkpoint of examples/train_autoencoder.py, whose release sets the latent scaling "
            "factor from the training images: rerun that script with its flags, --resume_from_checkpoint "
            f"{checkpoint} and --max_train_steps {os.path.basename(os.path.normpath(checkpoint)).split('-')[-1]}; it "
            "trains no further and saves the model."
        )
    if description["kind"] == "ldm":
        unet = AutoModel.from_pretrained(checkpoint, subfolder=_weights(checkpoint, "unet", use_ema))
        scheduler = DDIMScheduler.from_pretrained(scheduler_folder, clip_sample=False)
        vqvae = load_autoencoder(
            description["pretrained_model_name_or_path"], f"the frozen autoencoder of {description_path}",
            scaling_factor=read_run_flags(checkpoint).get("vae_scaling_factor"),
        )  # fmt: skip
        pipeline = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)
        pipeline.save_pretrained(output_dir)
        return pipeline
    if description["kind"] in ("sd", "dit"):
        return export_latent_conditional(checkpoint, output_dir, description, use_ema)
    if description["kind"] == "latent_sampler":
        base = PDAEPipeline.from_pretrained(description["pretrained_model_name_or_path"])
        as_stored_components(base, description["pretrained_model_name_or_path"])
        latent_sampler = LatentSampler.from_pretrained(
            checkpoint, subfolder=_weights(checkpoint, "latent_sampler", use_ema)
        )
        pipeline = PDAEPipeline(
            **{
                **base.components,
                "latent_sampler": latent_sampler,
                "latent_scheduler": DDIMScheduler.from_pretrained(scheduler_folder),
            }
        )
        pipeline.save_pretrained(output_dir)
        return pipeline
    dpm, flags = description["pretrained_model_name_or_path"], read_run_flags(checkpoint)
    denoiser, _ = load_frozen_dpm(dpm, flags.get("prompt"))
    pipeline = PDAEPipeline(
        **frozen_components(denoiser),
        scheduler=DDIMScheduler.from_pretrained(scheduler_folder, clip_sample=False),
        encoder=load_encoder(checkpoint, subfolder=_weights(checkpoint, "encoder", use_ema)),
        gradient_estimator=load_gradient_estimator(
            checkpoint, subfolder=_weights(checkpoint, "gradient_estimator", use_ema)
        ),
        vae=load_frozen_autoencoder(dpm, flags.get("vae_scaling_factor")),
    )
    pipeline.save_pretrained(output_dir)
    return pipeline


def export_latent_conditional(checkpoint: str, output_dir: str, description: dict, use_ema: bool) -> DiffusionPipeline:
    """A checkpoint of `train_dpm.py` with captions (a `StableDiffusionPipeline`, its text encoder rebuilt from the
    run's flags) or with `--model_type dit` (a `DiTPipeline`)."""
    scheduler = DDIMScheduler.from_pretrained(os.path.join(checkpoint, "scheduler"), clip_sample=False)
    vae = load_autoencoder(description["pretrained_model_name_or_path"])
    if description["kind"] == "dit":
        transformer = AutoModel.from_pretrained(checkpoint, subfolder=_weights(checkpoint, "transformer", use_ema))
        pipeline = dit_pipeline(transformer, vae, scheduler)
    else:
        text_encoder, tokenizer = text_encoder_for(read_run_flags(checkpoint))
        pipeline = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
            unet=AutoModel.from_pretrained(checkpoint, subfolder=_weights(checkpoint, "unet", use_ema)),
            feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
    pipeline.save_pretrained(output_dir)
    return pipeline
