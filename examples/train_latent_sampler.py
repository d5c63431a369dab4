"""Train a latent sampler for a trained PDAEPipeline: a small diffusion model over its codes z, so that
`pipe(batch_size=n)` generates new images (sample z, then decode it, as Diff-AE does).

    accelerate launch examples/train_latent_sampler.py --output_dir pdae-mnist-sampler   # the bundled pipeline

Flags follow `examples/train_pdae.py`. The training images are encoded once with the pipeline's encoder, before step
1 (centre-cropped, never flipped, so a resumed run sees the same codes); the sampler then learns the normalised codes
with the plain noise loss. Validation samples codes and compares them with the training codes (Frechet distance in
code space) and decodes a few into a grid; nothing is held out. The output folder is the whole pipeline with the
sampler added.
"""

from __future__ import annotations

import argparse

import PIL.Image
import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

import diffusers_pdae  # noqa: F401  (registers the PDAE classes for saving/loading)
from diffusers_pdae import LatentSampler, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path
from diffusers_pdae.data import load_training_dataset
from diffusers_pdae.evaluation import features_frechet_distance
from diffusers_pdae.image_utils import labelled_rows
from diffusers_pdae.training import (
    TrainingRun,
    add_data_args,
    add_optimization_args,
    add_output_args,
    as_stored_components,
    finalize_args,
    latent_sampler_model_card,
    make_parser,
    positive_int,
    sample_noise_and_timesteps,
)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=checkpoint_path("pdae-mnist"),
        help="The trained PDAEPipeline (folder or Hub id) whose codes the sampler learns (default: the bundled one).",
    )
    parser.add_argument("--hidden_dim", type=positive_int, default=512, help="Width of the sampler's hidden layers.")
    parser.add_argument("--num_layers", type=positive_int, default=6, help="Hidden layers of the sampler.")
    parser.add_argument("--time_embed_dim", type=positive_int, default=256, help="Width of the timestep embedding.")
    parser.add_argument(
        "--num_train_timesteps", type=positive_int, default=1000, help="Steps of the sampler's noise schedule."
    )
    parser.add_argument(
        "--beta_schedule",
        type=str,
        default="linear",
        choices=["linear", "scaled_linear", "squaredcos_cap_v2"],
        help="The sampler's noise schedule.",
    )
    parser.add_argument(
        "--encode_batch_size", type=positive_int, default=256, help="Images per encoder call when encoding the data."
    )
    parser.add_argument(
        "--num_validation_codes", type=positive_int, default=1000, help="Codes sampled to validate the sampler."
    )
    parser.add_argument(
        "--num_validation_images", type=positive_int, default=8, help="Sampled codes decoded into the grid."
    )
    parser.add_argument(
        "--validation_inference_steps",
        type=positive_int,
        default=50,
        help="Steps of the sampler (and of the decoding) at validation.",
    )
    add_data_args(parser)
    # 1e-3 fits the bundled codes far better than 1e-4 in the same 3,000 steps (docs/generation.md)
    add_optimization_args(parser, learning_rate=1e-3)
    add_output_args(parser, output_dir="pdae-latent-sampler")
    parser.set_defaults(train_batch_size=256, lr_warmup_steps=100)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return finalize_args(build_parser().parse_args(argv))


@torch.no_grad()
def encode_dataset(pipeline: PDAEPipeline, dataset, batch_size: int, disable_progress: bool) -> torch.Tensor:
    """The codes `(N, latent_dim)` of every image of `dataset`, in order, on the CPU (float32)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    codes = [
        pipeline.encoder(batch["pixel_values"].to(pipeline.device, pipeline.encoder.dtype)).z.float().cpu()
        for batch in tqdm(loader, desc="Encoding the training images", disable=disable_progress)
    ]
    return torch.cat(codes)


class CodeDataset(torch.utils.data.Dataset):
    """Normalised codes as training items `{"codes": (latent_dim,)}`."""

    def __init__(self, codes: torch.Tensor):
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> dict:
        return {"codes": self.codes[index]}


def main(argv=None):
    args = parse_args(argv)
    run = TrainingRun(args, "train_latent_sampler")

    base = PDAEPipeline.from_pretrained(args.pretrained_model_name_or_path).to(run.accelerator.device)
    as_stored_components(base, args.pretrained_model_name_or_path)  # released with the source's configs
    base.set_progress_bar_config(disable=True)
    channels, size, _ = base.image_shape  # the pixel images (of a latent pipeline too)
    if args.resolution not in (None, size):
        raise ValueError(f"--resolution {args.resolution} differs from the size of the pipeline's images, {size}.")
    dataset = load_training_dataset(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.image_column,
        channels, size, True, False, args.cache_dir, check_images=not args.skip_image_check,
    )  # fmt: skip
    codes = encode_dataset(base, dataset, args.encode_batch_size, not run.accelerator.is_local_main_process)
    if len(codes) < 2:
        raise ValueError(f"The dataset holds {len(codes)} image(s); the sampler needs at least 2 codes to learn from.")

    latent_sampler = LatentSampler(
        latent_dim=base.latent_dim,
        hidden_dim=args.hidden_dim,
        num_layers=args.num_layers,
        time_embed_dim=args.time_embed_dim,
    )
    latent_sampler.set_code_statistics(codes)
    latent_scheduler = DDIMScheduler(
        num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule, clip_sample=False
    )
    latent_sampler = run.prepare(
        {"latent_sampler": latent_sampler}, CodeDataset(latent_sampler.normalize(codes)), "latent_sampler",
        latent_scheduler, args.pretrained_model_name_or_path,
    )  # fmt: skip

    def compute_loss(batch):
        clean = batch["codes"]
        noise, timesteps = sample_noise_and_timesteps(clean, args.num_train_timesteps, run.noise_generator)
        noisy = latent_scheduler.add_noise(clean, noise, timesteps)
        return (latent_sampler(noisy, timesteps).sample.float() - noise).pow(2).mean(dim=1)

    def build_pipeline() -> PDAEPipeline:
        final = run.final_model("latent_sampler").eval()
        pipeline = PDAEPipeline(**{**base.components, "latent_sampler": final, "latent_scheduler": latent_scheduler})
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def measure(global_step: int) -> tuple[dict, PIL.Image.Image]:
        pipeline = build_pipeline()
        steps = args.validation_inference_steps
        generator = torch.Generator().manual_seed(0)
        sampled = pipeline.sample_codes(args.num_validation_codes, steps, generator).float().cpu()
        images = pipeline(
            z=sampled[: args.num_validation_images], num_inference_steps=steps, generator=generator, output_type="pt"
        ).images
        return {"val_code_fd": features_frechet_distance(sampled, codes)}, labelled_rows([("sampled z", images)])

    validation = run.periodic_validation(measure, "samples", f"{args.num_validation_codes} sampled codes")
    held_out = "nothing (validation compares with the training codes)"
    run.train(compute_loss, len(codes), held_out, validation=validation)
    run.finish(build_pipeline, latent_sampler_model_card, validation)


if __name__ == "__main__":
    main()
