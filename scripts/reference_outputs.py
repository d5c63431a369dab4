"""Record or compare the bundled pipelines' outputs bit for bit, to check that a restructure changed no number.

    python scripts/reference_outputs.py record outputs/reference.safetensors    # before the change
    python scripts/reference_outputs.py compare outputs/reference.safetensors   # after: exit 1 on any difference

Every public method of each bundled PDAE pipeline (pixel and latent) runs on four test digits with a few DDIM steps,
and one training loss with its gradients is taken on each bundled DPM, all from fixed seeds on one CPU thread.
"""

from __future__ import annotations

import argparse
import sys

import torch
from safetensors.torch import load_file, save_file

import diffusers_pdae  # noqa: F401  (registers the PDAE classes)
from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist
from diffusers_pdae.training import pdae_training_loss

STEPS = 5


def pipeline_outputs(name: str) -> dict[str, torch.Tensor]:
    pipe = PDAEPipeline.from_pretrained(checkpoint_path(name))
    pipe.set_progress_bar_config(disable=True)
    digits = load_mnist("test")["image"][::500]
    z = pipe.encode(digits)
    x_T = pipe.invert(digits, z, num_inference_steps=STEPS)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((4, *pipe.sample_shape), generator=generator)
    outputs = {
        "z": z,
        "x_T": x_T,
        "x_T_plain": pipe.invert(digits, num_inference_steps=STEPS, apply_shift=False),
        "decoded": pipe.decode(x_T, z, num_inference_steps=STEPS, output_type="pt").images,
        "decoded_latent": pipe.decode(x_T, z, num_inference_steps=STEPS, output_type="latent").images,
        "called": pipe(z=z, latents=x_T, num_inference_steps=STEPS, output_type="pt").images,
        "called_range": pipe(
            z=z, latents=x_T, num_inference_steps=STEPS, shift_range=(300, 700), output_type="pt"
        ).images,
        "sampled": pipe(
            batch_size=2, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(1), output_type="pt"
        ).images,
        "reconstructed": pipe.reconstruct(digits, num_inference_steps=STEPS, output_type="pt").images,
        "from_z": pipe.reconstruct(
            digits,
            num_inference_steps=STEPS,
            invert=False,
            generator=torch.Generator().manual_seed(2),
            output_type="pt",
        ).images,
        "interpolated": pipe.interpolate(
            digits[0], digits[1], num=3, num_inference_steps=STEPS, output_type="pt"
        ).images,
        "manipulated": pipe.manipulate(
            digits[:2], z[0] - z[1], scales=[-1.0, 1.0], num_inference_steps=STEPS, output_type="pt"
        ).images,  # fmt: skip
    }
    for t in (0, 500, 999):
        outputs[f"eps_{t}"] = pipe.predict_noise(sample, t)
        outputs[f"eps_hat_{t}"] = pipe.predict_noise(sample, t, z)
    outputs.update(training_outputs(pipe))
    return {f"{name}/{key}": value.detach().float().contiguous() for key, value in outputs.items()}


def training_outputs(pipe: PDAEPipeline) -> dict[str, torch.Tensor]:
    """One PDAE loss on the pipeline's frozen DPM with a fresh, seeded G, and the gradients of G and the encoder."""
    torch.manual_seed(0)
    estimator = GradientEstimator.from_unet(pipe.unet, latent_dim=pipe.latent_dim, noise_scheduler=pipe.scheduler)
    torch.nn.init.normal_(estimator.conv_out.weight, std=0.01)  # a G that is not zero, so the loss sees it
    encoder = pipe.encoder
    generator = torch.Generator().manual_seed(3)
    clean = torch.randn((4, *pipe.sample_shape), generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    timesteps = torch.tensor([0, 250, 600, 999])
    pixels = torch.rand((4, *pipe.image_shape), generator=generator) * 2 - 1
    encoder_input = pixels if pipe.encoder.config.sample_size == pipe.image_shape[1] else None
    loss = pdae_training_loss(
        pipe.unet, encoder, estimator, pipe.scheduler, clean, noise, timesteps, encoder_input=encoder_input
    )
    loss.mean().backward()
    grads = {"loss": loss, "grad_G_out": estimator.conv_out.weight.grad}
    first = next(p for p in encoder.parameters() if p.grad is not None)
    grads["grad_encoder_first"] = first.grad
    return grads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("path")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    outputs = {}
    for name in ("pdae-mnist", "pdae-ldm-mnist"):
        outputs.update(pipeline_outputs(name))
    if args.mode == "record":
        save_file(outputs, args.path)
        print(f"recorded {len(outputs)} tensors to {args.path}")
        return 0
    reference = load_file(args.path)
    differing = [key for key in reference if key not in outputs or not torch.equal(reference[key], outputs[key])]
    for key in differing:
        got = outputs.get(key)
        gap = "missing" if got is None else f"max |diff| {(got - reference[key]).abs().max().item():.3g}"
        print(f"DIFFERS {key}: {gap}")
    print(f"{len(reference) - len(differing)} of {len(reference)} tensors bit-identical")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
