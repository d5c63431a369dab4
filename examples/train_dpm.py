"""Pre-train a small unconditional DDPM (UNet2DModel + DDPMScheduler) to serve as PDAE's frozen DPM, on images or, as
a latent diffusion model, on the latents of a frozen autoencoder.

    accelerate launch examples/train_dpm.py --output_dir ddpm-mnist --max_train_steps 20000 --use_ema
    accelerate launch examples/train_dpm.py --pretrained_vae_model_name_or_path vq-mnist --output_dir ldm-mnist

Flags follow diffusers' `examples/unconditional_image_generation/train_unconditional.py`. Without --dataset_name or
--train_data_dir it trains on the bundled MNIST "train" split (offline). The output folder is an ordinary diffusers
`DDPMPipeline`; with --pretrained_vae_model_name_or_path (the flag of diffusers' text-to-image training scripts) an
`LDMPipeline` (`vqvae`, `unet`, `scheduler`: a DDIMScheduler without clipping), whose UNet denoises the autoencoder's
latents, encoded on the fly (an AutoencoderKL's posterior sampled), while --resolution stays the pixel size.

With captions (--digit_captions for the bundled digits, "a handwritten digit seven"; --caption_column for a dataset's
text) it trains a text-conditional latent DPM, a `UNet2DConditionModel` on a frozen text encoder's embeddings, and
releases a `StableDiffusionPipeline`; --proportion_empty_prompts of the captions are replaced by the empty prompt, so
that the empty prompt is a real unconditional model.

    accelerate launch examples/train_dpm.py --pretrained_vae_model_name_or_path kl-mnist --digit_captions \
      --output_dir sd-mnist

With --model_type dit it trains a class-conditional diffusion transformer (a `DiTTransformer2DModel`) on the bundled
digits' labels and an AutoencoderKL's latents, and releases a `DiTPipeline`; the model drops 10% of the labels to
its null class in training, as DiT does, so the null class is a real unconditional model.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    LDMPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)

from diffusers_pdae.data import dataset_size, image_geometry, load_image_dataset, load_training_dataset
from diffusers_pdae.image_utils import make_grid
from diffusers_pdae.latent_space import downsampling_factor
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_optimization_args,
    add_output_args,
    add_streaming_args,
    add_vae_scaling_factor_arg,
    dpm_model_card,
    encode_batch,
    finalize_args,
    freeze,
    latent_unet_geometry,
    ldm_model_card,
    load_autoencoder,
    make_parser,
    positive_int,
    sample_noise_and_timesteps,
    text_to_image_model_card,
)
from diffusers_pdae.training.args import fraction
from diffusers_pdae.training.latent_cards import dit_model_card
from diffusers_pdae.training.text_conditioning import (
    DIGIT_NAMES,
    digit_caption,
    digit_captions,
    dit_pipeline,
    drop_captions,
    encode_captions,
    text_encoder_for,
)

# The bundled MNIST DPM: 1.6M parameters, 32x32 (28x28 digits padded), attention at 8x8.
MNIST_UNET_CONFIG = {
    "sample_size": 32,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 32,
}
# The bundled sd-mnist's UNet: cross-attention at the two finer of three levels, as SD 1.x has it at three of four;
# attention_head_dim counts heads, as in SD's configs. cross_attention_dim comes from the text encoder.
MNIST_TEXT_UNET_CONFIG = {
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 4,
}
# The bundled dit-mnist's transformer: 16 tokens of 4x8x8 latents (patch 2), 6 blocks of width 128. Its label table
# has DiT's 1000 classes (the digits use 0-9) because DiTPipeline's guidance hard-codes the null class 1000.
MNIST_DIT_CONFIG = {
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "num_layers": 6,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
    "norm_num_groups": 32,
}
# Classifier-free guidance of the sample grids of a text- or class-conditional latent DPM.
GRID_GUIDANCE_SCALE = 3.0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--model_config_name_or_path",
        type=str,
        default=None,
        help="A UNet2DModel config (folder or JSON file, e.g. docs/configs/unet-rgb-32.json); without it the bundled "
        "MNIST layout, with the channels and size of the training images.",
    )
    parser.add_argument(
        "--pretrained_vae_model_name_or_path",
        type=str,
        default=None,
        help="Train a latent diffusion model on the latents of this frozen autoencoder: a VQModel or AutoencoderKL "
        "folder or Hub id (e.g. from examples/train_autoencoder.py), or an LDM pipeline folder with vqvae/ or vae/. "
        "--resolution stays the pixel size; the output is an LDMPipeline.",
    )
    add_vae_scaling_factor_arg(parser, "--pretrained_vae_model_name_or_path: the latents are scaled by it")
    parser.add_argument("--ddpm_num_steps", type=positive_int, default=1000, help="Training timesteps T.")
    parser.add_argument(
        "--ddpm_num_inference_steps",
        type=positive_int,
        default=1000,
        help="Steps of the sample grids (DDPM steps; DDIM steps for a latent diffusion model).",
    )
    parser.add_argument("--ddpm_beta_schedule", type=str, default="linear", help="diffusers' beta schedule.")
    parser.add_argument("--eval_batch_size", type=positive_int, default=16, help="Samples in each sample grid.")
    parser.add_argument(
        "--num_class_embeds",
        type=positive_int,
        default=None,
        help="Train a class-conditional DPM with this many classes (the bundled MNIST has 10 digit labels); used to "
        "compare conditional and unconditional diffusion losses.",
    )
    parser.add_argument(
        "--model_type",
        choices=("unet", "dit"),
        default="unet",
        help="unet: a UNet2DModel (or UNet2DConditionModel with captions); dit: a class-conditional "
        "DiTTransformer2DModel on the bundled digits' labels and an AutoencoderKL's latents (a DiTPipeline).",
    )
    parser.add_argument(
        "--digit_captions",
        action="store_true",
        help="Train a text-conditional latent DPM (a StableDiffusionPipeline) on the bundled MNIST digits, captioned "
        "from their labels ('a handwritten digit seven'), through a small CLIP text encoder built for them.",
    )
    parser.add_argument(
        "--caption_column",
        type=str,
        default=None,
        help="Train a text-conditional latent DPM on this text column of --dataset_name / --train_data_dir (needs "
        "--pretrained_text_encoder_name_or_path).",
    )
    parser.add_argument(
        "--proportion_empty_prompts",
        type=fraction,
        default=None,
        help="Share of captions replaced by the empty prompt, so the empty prompt is a real unconditional model "
        "(default 0.1, as Stable Diffusion was trained).",
    )
    parser.add_argument(
        "--pretrained_text_encoder_name_or_path",
        type=str,
        default=None,
        help="A Stable Diffusion folder or Hub id whose text_encoder/ and tokenizer/ condition the DPM (frozen).",
    )
    add_data_args(parser)
    add_streaming_args(parser)
    add_optimization_args(parser, learning_rate=2e-4)
    add_output_args(parser, output_dir="ddpm-model")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    args = finalize_args(build_parser().parse_args(argv))
    args.text_conditioned = args.digit_captions or args.caption_column is not None
    if args.model_type == "dit":
        check_dit_args(args)
    if args.text_conditioned:
        check_text_args(args)
    else:
        for flag in ("proportion_empty_prompts", "pretrained_text_encoder_name_or_path"):
            if getattr(args, flag) is not None:
                raise ValueError(
                    f"--{flag} applies to a text-conditional DPM: add --digit_captions or --caption_column."
                )
    if args.vae_scaling_factor is not None and args.pretrained_vae_model_name_or_path is None:
        raise ValueError(
            "--vae_scaling_factor scales an autoencoder's latents: pass --pretrained_vae_model_name_or_path too."
        )
    if args.pretrained_vae_model_name_or_path is not None and args.num_class_embeds is not None:
        raise ValueError(
            "--num_class_embeds cannot be combined with --pretrained_vae_model_name_or_path: diffusers' LDMPipeline "
            "samples unconditionally."
        )
    return args


def check_dit_args(args) -> None:
    """The flags of a DiT fit together (each refusal names the flag to change)."""
    if args.pretrained_vae_model_name_or_path is None:
        raise ValueError(
            "A DiT is trained on an AutoencoderKL's latents, as DiTPipeline decodes them: pass "
            "--pretrained_vae_model_name_or_path (e.g. a KL autoencoder from examples/train_autoencoder.py)."
        )
    if args.dataset_name is not None or args.train_data_dir is not None:
        raise ValueError(
            "--model_type dit learns the bundled MNIST digits' labels; drop --dataset_name/--train_data_dir."
        )
    if args.text_conditioned or args.num_class_embeds is not None:
        raise ValueError(
            "A DiT is conditioned on class labels; drop --digit_captions/--caption_column/--num_class_embeds."
        )


def check_text_args(args) -> None:
    """The flags of a text-conditional DPM fit together (each refusal names the flag to change)."""
    own_data = args.dataset_name is not None or args.train_data_dir is not None
    if args.digit_captions and (args.caption_column is not None or own_data):
        raise ValueError(
            "--digit_captions captions the bundled MNIST digits by their labels; for your own images pass "
            "--caption_column (and --dataset_name or --train_data_dir) instead."
        )
    if args.pretrained_vae_model_name_or_path is None:
        raise ValueError(
            "A text-conditional DPM is trained on an autoencoder's latents, as Stable Diffusion is: pass "
            "--pretrained_vae_model_name_or_path (e.g. a KL autoencoder from examples/train_autoencoder.py)."
        )
    if args.num_class_embeds is not None:
        raise ValueError("--num_class_embeds and captions are two conditionings; keep one.")
    if args.caption_column is not None and args.pretrained_text_encoder_name_or_path is None:
        raise ValueError(
            "Free-text captions (--caption_column) need a pre-trained text encoder: pass "
            "--pretrained_text_encoder_name_or_path (a Stable Diffusion folder with text_encoder/ and tokenizer/)."
        )
    if args.proportion_empty_prompts is None:
        args.proportion_empty_prompts = 0.1


# The bundled layout's UNet halves the image twice: sizes must be multiples of 4, and it is meant for small images.
LARGEST_DEFAULT_SIZE = 64


def image_geometry_of(args) -> tuple[int, int]:
    """`(channels, shorter side)` of the training images (the bundled MNIST: 1 and 32)."""
    if args.dataset_name is None and args.train_data_dir is None:
        return 1, MNIST_UNET_CONFIG["sample_size"]
    raw = load_image_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir, streaming=args.streaming
    )
    return image_geometry(raw, args.image_column)


def data_geometry(args) -> tuple[int, int]:
    """`(channels, sample size)` for the default layout, from the training images (or refuse, naming the flag)."""
    if args.dataset_name is None and args.train_data_dir is None:
        return 1, args.resolution or MNIST_UNET_CONFIG["sample_size"]
    channels, side = image_geometry_of(args)
    size = args.resolution or side
    if size % 4 or size > LARGEST_DEFAULT_SIZE:
        raise ValueError(
            f"The training images are {side} px on their shorter side; the default UNet layout needs a size that is "
            f"a multiple of 4 and at most {LARGEST_DEFAULT_SIZE}. Pass --resolution (e.g. 32), or "
            "--model_config_name_or_path for a larger UNet."
        )
    return channels, size


def unet_class(args) -> type:
    """The class of the model to train: a DiT, `UNet2DConditionModel` with captions, else `UNet2DModel`."""
    if args.model_type == "dit":
        return DiTTransformer2DModel
    return UNet2DConditionModel if args.text_conditioned else UNet2DModel


def unet_layout(args) -> dict:
    """The UNet config of --model_config_name_or_path (a JSON file or a folder), or the bundled MNIST layout."""
    if args.model_config_name_or_path is None and args.model_type == "dit":
        return dict(MNIST_DIT_CONFIG)
    if args.model_config_name_or_path is None:
        return dict(MNIST_TEXT_UNET_CONFIG if args.text_conditioned else MNIST_UNET_CONFIG)
    if os.path.isfile(args.model_config_name_or_path):
        with open(args.model_config_name_or_path) as f:
            return json.load(f)
    return dict(unet_class(args).load_config(args.model_config_name_or_path))


def latent_sample_size(args, config: dict, vae) -> int:
    """The UNet's sample size on `vae`'s latents, with `args.resolution` set to the pixel size: --resolution, or the
    given layout's sample size times the downsampling, or the training images' size (or refuse, naming the flag)."""
    given = args.model_config_name_or_path is not None
    if args.resolution is None and given and config.get("sample_size") is None:
        raise ValueError("The UNet config of --model_config_name_or_path has no sample_size: pass --resolution.")
    if args.resolution is None:
        args.resolution = config["sample_size"] * downsampling_factor(vae) if given else image_geometry_of(args)[1]
    defaults = inspect.signature(unet_class(args).__init__).parameters
    channels = tuple(config.get(key, defaults[key].default) for key in ("in_channels", "out_channels"))
    size = latent_unet_geometry(vae, args.resolution, channels if given else None)
    if not given and (size % 4 or size > LARGEST_DEFAULT_SIZE):
        raise ValueError(
            f"The latents of {args.resolution}-px images are {size}x{size}; the default UNet layout needs a latent "
            f"size that is a multiple of 4 and at most {LARGEST_DEFAULT_SIZE}. Pass --resolution (e.g. "
            f"{8 * downsampling_factor(vae)}), or --model_config_name_or_path for a larger UNet."
        )
    return size


def unet_config(args, vae=None, text_encoder=None) -> dict:
    """The config of the UNet to train, on the training images or on `vae`'s latents (conditioned on
    `text_encoder`'s embeddings when given), checked before any work; sets `args.resolution` to the pixel size."""
    config = unet_layout(args)
    if text_encoder is not None:
        config["cross_attention_dim"] = text_encoder.config.hidden_size
    default_layout = args.model_config_name_or_path is None
    if vae is not None:
        config["sample_size"] = latent_sample_size(args, config, vae)
        if default_layout:
            config.update(in_channels=vae.config.latent_channels, out_channels=vae.config.latent_channels)
    else:
        if default_layout:
            channels, size = data_geometry(args)
            config.update(in_channels=channels, out_channels=channels, sample_size=size)
        if args.resolution is not None:
            config["sample_size"] = args.resolution
        args.resolution = config.get("sample_size")
    if args.num_class_embeds is not None:
        config["num_class_embeds"] = args.num_class_embeds
    return config


@torch.no_grad()
def sample_class_conditional(unet: UNet2DModel, noise_scheduler: DDPMScheduler, args, generator) -> np.ndarray:
    """DDPM samples of a class-conditional UNet, classes in turn (DDPMPipeline has no class labels)."""
    scheduler = DDPMScheduler.from_config(noise_scheduler.config)
    scheduler.set_timesteps(args.ddpm_num_inference_steps)
    size = unet.config.sample_size
    shape = (args.eval_batch_size, unet.config.in_channels, size, size)
    sample = torch.randn(shape, generator=generator).to(unet.device)
    labels = (torch.arange(args.eval_batch_size) % args.num_class_embeds).to(unet.device)
    for t in scheduler.timesteps:
        noise_pred = unet(sample, t, class_labels=labels).sample
        sample = scheduler.step(noise_pred, t, sample, generator=generator).prev_sample
    return (sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def main(argv=None):
    args = parse_args(argv)
    vae_path = args.pretrained_vae_model_name_or_path
    vae = None if vae_path is None else freeze(load_autoencoder(vae_path, scaling_factor=args.vae_scaling_factor))
    if args.model_type == "dit" and not isinstance(vae, AutoencoderKL):
        raise ValueError(
            f"--pretrained_vae_model_name_or_path holds a {type(vae).__name__}; DiTPipeline decodes with an "
            "AutoencoderKL (examples/train_autoencoder.py --autoencoder_type kl makes one)."
        )
    text_encoder, tokenizer = text_encoder_for(vars(args)) if args.text_conditioned else (None, None)
    config = unet_config(args, vae, text_encoder)
    run = TrainingRun(args, "train_dpm")

    model = unet_class(args).from_config(config)
    # An LDM's latents are not bounded to [-1, 1]: its schedulers must not clip them (as CompVis/ldm-celebahq-256's)
    latent_options = {} if vae is None else {"clip_sample": False}
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule, **latent_options
    )
    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        model.config.in_channels if vae is None else vae.config.in_channels, args.resolution, args.center_crop,
        args.random_flip, args.cache_dir, check_images=not args.skip_image_check, streaming=args.streaming,
        caption_column=args.caption_column,
    )  # fmt: skip
    latent_shape = (model.config.in_channels, model.config.sample_size, model.config.sample_size)
    for frozen_name, frozen in (("vae", vae), ("text_encoder", text_encoder)):
        if frozen is not None:
            run.prepare_frozen(frozen, frozen_name)
    kind = "ddpm" if vae is None else "dit" if args.model_type == "dit" else "sd" if args.text_conditioned else "ldm"
    name = "transformer" if args.model_type == "dit" else "unet"  # the component, as diffusers names it
    model = run.prepare({name: model}, dataset, kind, noise_scheduler, vae_path)

    def condition(batch) -> dict:
        """The model's conditioning inputs for a batch: class labels, caption embeddings (some captions dropped to
        the empty prompt, drawn from the run's checkpointed generator) or nothing."""
        if args.num_class_embeds is not None or args.model_type == "dit":
            return {"class_labels": batch["class_labels"]}
        if not args.text_conditioned:
            return {}
        if args.digit_captions:
            captions = [digit_caption(label) for label in batch["class_labels"]]
        else:
            captions = batch["caption"]
        captions = drop_captions(captions, args.proportion_empty_prompts, run.noise_generator)
        return {"encoder_hidden_states": encode_captions(text_encoder, tokenizer, captions)}

    def compute_loss(batch):
        clean_images = batch["pixel_values"]
        if vae is not None:
            clean_images = encode_batch(vae, clean_images, run.noise_generator)
        noise, timesteps = sample_noise_and_timesteps(clean_images, args.ddpm_num_steps, run.noise_generator)
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
        noise_pred = model(noisy_images, timesteps, **condition(batch)).sample
        return F.mse_loss(noise_pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))

    released = {}

    def final_pipeline() -> DDPMPipeline | LDMPipeline | StableDiffusionPipeline | DiTPipeline:
        if vae is None:
            return DDPMPipeline(unet=run.final_model("unet"), scheduler=noise_scheduler)
        if not released:  # the source weights in float32, not the training copies in the run's weight dtype
            released["vae"] = load_autoencoder(vae_path, scaling_factor=args.vae_scaling_factor)
            released["vae"].to(run.accelerator.device)
            if args.text_conditioned:
                released["text_encoder"] = text_encoder_for(vars(args))[0].to(run.accelerator.device)
        scheduler = DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False)
        if args.model_type == "dit":
            return dit_pipeline(run.final_model("transformer"), released["vae"], scheduler)
        if args.text_conditioned:
            return StableDiffusionPipeline(
                vae=released["vae"], text_encoder=released["text_encoder"], tokenizer=tokenizer,
                unet=run.final_model("unet"), scheduler=scheduler, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False,
            )  # fmt: skip
        return LDMPipeline(vqvae=released["vae"], unet=run.final_model("unet"), scheduler=scheduler)

    grid_prompts = digit_captions() if args.digit_captions else None
    last_grid = {}

    def sample_images(generator: torch.Generator, global_step: int) -> tuple[np.ndarray, int]:
        """Samples `(N, H, W, C)` for the grid, and the images per grid row (one row per prompt with captions)."""
        if args.num_class_embeds is not None:
            return sample_class_conditional(run.final_model("unet"), noise_scheduler, args, generator), 8
        pipeline = final_pipeline()
        pipeline.set_progress_bar_config(desc=f"sampling at step {global_step}", leave=False)
        steps = {"num_inference_steps": args.ddpm_num_inference_steps, "output_type": "np", "generator": generator}
        if args.model_type == "dit":  # one row per digit
            copies = max(1, args.eval_batch_size // len(DIGIT_NAMES))
            labels = [label for label in range(len(DIGIT_NAMES)) for _ in range(copies)]
            return pipeline(labels, guidance_scale=GRID_GUIDANCE_SCALE, **steps).images, copies
        if not args.text_conditioned:
            return pipeline(batch_size=args.eval_batch_size, **steps).images, 8
        prompts = grid_prompts or [dataset[i]["caption"] for i in range(min(args.eval_batch_size, len(dataset)))]
        copies = max(1, args.eval_batch_size // len(prompts))
        images = pipeline(prompts, num_images_per_prompt=copies, guidance_scale=GRID_GUIDANCE_SCALE, **steps).images
        return images, copies

    def save_samples(global_step: int) -> None:
        images, per_row = sample_images(torch.Generator().manual_seed(0), global_step)
        grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=min(per_row, len(images)))
        last_grid["path"] = os.path.join(args.output_dir, "samples", f"step-{global_step:06d}.png")
        os.makedirs(os.path.dirname(last_grid["path"]), exist_ok=True)
        grid.save(last_grid["path"])
        for tracker in run.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_images("samples", images.transpose(0, 3, 1, 2), global_step)

    def on_epoch_end(epoch: int, global_step: int, last_epoch: bool) -> None:
        # after the last epoch the final pipeline is saved first, then sampled (below)
        if not last_epoch and run.accelerator.is_main_process and (epoch + 1) % args.save_images_epochs == 0:
            save_samples(global_step)

    loop = run.train(compute_loss, dataset_size(dataset), on_epoch_end=on_epoch_end, save_pipeline=final_pipeline)
    run.save_pipeline(final_pipeline)  # before sampling, which can take long on a CPU
    if run.accelerator.is_main_process:
        save_samples(loop.global_step)
    card = dpm_model_card
    if args.model_type == "dit":
        card = functools.partial(dit_model_card, latent_shape=latent_shape)
    elif args.text_conditioned:
        prompt = digit_caption(7) if args.digit_captions else dataset[0]["caption"]
        card = functools.partial(text_to_image_model_card, latent_shape=latent_shape, prompt=prompt)
    elif vae is not None:
        card = functools.partial(ldm_model_card, class_name=type(vae).__name__, latent_shape=latent_shape)
    run.release(card, grid_source=last_grid.get("path"), card_image="samples.png")


if __name__ == "__main__":
    main()
