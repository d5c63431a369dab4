"""Check diffusers' CPU offloading on PDAEPipeline, on a CUDA GPU: the same images as without offloading, and the
models that run at every step (UNet and G) stay on the GPU between steps.

    python benchmarks/check_offload.py --batch_size 64 --steps 50 --json offload.json

For each configuration it prints seconds per call, peak GPU memory, and at how many of the step ends the UNet and G
were on the GPU: no offloading; `enable_model_cpu_offload` with the pipeline's order (encoder->unet, G kept on the
GPU); the same with the naive order encoder->unet->gradient_estimator (for comparison: the UNet then leaves the GPU
at every step); and `enable_sequential_cpu_offload`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=checkpoint_path("pdae-mnist"), help="A PDAEPipeline folder.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per configuration (after one warm-up).")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def device_of(model: torch.nn.Module) -> str:
    return next(model.parameters()).device.type


def measure(pipe: PDAEPipeline, z: torch.Tensor, latents: torch.Tensor, steps: int, repeats: int) -> dict:
    placements = []

    def record(pipeline, step, timestep, tensors):
        placements.append((device_of(pipeline.unet), device_of(pipeline.gradient_estimator)))
        return {}

    images = pipe(z=z, latents=latents, num_inference_steps=steps, output_type="pt", callback_on_step_end=record)
    placements.clear()
    torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        images = pipe(z=z, latents=latents, num_inference_steps=steps, output_type="pt", callback_on_step_end=record)
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return {
        "images": images.images.float().cpu(),
        "seconds_per_call": sorted(seconds)[len(seconds) // 2],
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
        "step_ends_with_unet_on_gpu": sum(unet == "cuda" for unet, _ in placements),
        "step_ends_with_g_on_gpu": sum(g == "cuda" for _, g in placements),
        "step_ends": len(placements),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("check_offload.py needs a CUDA GPU (offloading moves models between the CPU and the GPU).")
    generator = torch.Generator().manual_seed(0)
    reference_pipe = PDAEPipeline.from_pretrained(args.pipeline).to("cuda")
    reference_pipe.set_progress_bar_config(disable=True)
    size = reference_pipe.unet.config.sample_size
    latents = torch.randn(args.batch_size, reference_pipe.unet.config.in_channels, size, size, generator=generator)
    z = torch.randn(args.batch_size, reference_pipe.latent_dim, generator=generator)

    def fresh() -> PDAEPipeline:
        pipe = PDAEPipeline.from_pretrained(args.pipeline)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    results = {"no offloading": measure(reference_pipe, z, latents, args.steps, args.repeats)}
    del reference_pipe
    torch.cuda.empty_cache()
    pipe = fresh()
    pipe.enable_model_cpu_offload()
    results["model offload (encoder->unet, G kept)"] = measure(pipe, z, latents, args.steps, args.repeats)
    naive = fresh()
    naive.model_cpu_offload_seq, naive._exclude_from_cpu_offload = "encoder->unet->gradient_estimator", []
    naive.enable_model_cpu_offload()
    results["model offload, naive order encoder->unet->gradient_estimator"] = measure(
        naive, z, latents, args.steps, args.repeats
    )
    sequential = fresh()
    sequential.enable_sequential_cpu_offload()
    results["sequential offload"] = measure(sequential, z, latents, args.steps, 1)

    reference = results["no offloading"]["images"]
    report = {"device": torch.cuda.get_device_name(), "batch_size": args.batch_size, "steps": args.steps}
    print(f"{report['device']}, batch {args.batch_size}, {args.steps} steps")
    print(f"{'configuration':<62}{'s/call':>8}{'peak MiB':>10}{'UNet on GPU':>13}{'G on GPU':>10}{'max |diff|':>12}")
    for name, figures in results.items():
        difference = (figures.pop("images") - reference).abs().max().item()
        figures["max_abs_difference_to_no_offloading"] = difference
        on_gpu = f"{figures['step_ends_with_unet_on_gpu']}/{figures['step_ends']}"
        print(
            f"{name:<62}{figures['seconds_per_call']:>8.3f}{figures['peak_gpu_mib']:>10.0f}{on_gpu:>13}"
            f"{figures['step_ends_with_g_on_gpu']:>10}{difference:>12.2e}"
        )
    report["results"] = results
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
