"""How close a pipeline's latent sampler comes to the codes of real digits: the code-space Frechet distance to the
codes of 2,000 class-balanced test digits of 2,000 sampled codes (DDIM, eta 0 and 1) and, as the floor, of the codes
of 2,000 class-balanced train digits (docs/bundled_checkpoints.md).

    python examples/mnist_paper/latent_sampler_fd.py                       # the bundled pdae-mnist, about 1 min
"""

import argparse

import torch
from representation_baselines import pdae_codes

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_tensors
from diffusers_pdae.evaluation import features_frechet_distance, stratified_indices
from diffusers_pdae.figures import check_finite_figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=str(checkpoint_path("pdae-mnist")), help="A PDAEPipeline folder.")
    parser.add_argument("--num_codes", type=int, default=2000)
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pipeline = PDAEPipeline.from_pretrained(args.pipeline)
    pipeline.set_progress_bar_config(disable=True)

    def codes_of(split: str) -> torch.Tensor:
        images, labels = load_mnist_tensors(split, size=pipeline.unet.config.sample_size)
        return pdae_codes(pipeline, images[stratified_indices(labels.numpy(), args.num_codes, args.seed)])

    test_codes = codes_of("test")
    distances = {"train codes": features_frechet_distance(codes_of("train"), test_codes)}
    for eta in (0.0, 1.0):
        generator = torch.Generator().manual_seed(args.seed)
        sampled = pipeline.sample_codes(args.num_codes, args.num_inference_steps, generator, eta=eta)
        distances[f"sampled codes, eta {eta:g}"] = features_frechet_distance(sampled.float().cpu(), test_codes)
    check_finite_figures(distances, "The Frechet distances", "The codes are not finite: check the pipeline's weights.")
    for name, distance in distances.items():
        print(f"{name:22s} {distance:.3f}")
    return distances


if __name__ == "__main__":
    with torch.no_grad():
        main()
