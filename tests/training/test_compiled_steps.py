"""Compiled training and sampling steps (torch.compile, as Accelerate's dynamo option applies it) match the eager ones.

The fast tests compile with the "aot_eager" backend (dynamo's capture and autograd tracing, without generating
kernels): what can break in our code under compilation (the forward hooks that capture the UNet's features, in-place
compilation keeping the classes the pipeline checks) breaks there too. The slow test uses inductor for real.
"""

import os
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import DDIMScheduler, DDPMScheduler

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.training import pdae_training_loss
from diffusers_pdae.training.accelerator import compile_frozen_model, drop_last_batch

from ..conftest import LATENT_DIM, REPO, perturb_output, tiny_encoder, tiny_images, tiny_unet


def _models(seed: int = 0):
    unet = tiny_unet().requires_grad_(False)
    encoder = tiny_encoder().train()
    estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, warm_start=True)).train()
    return unet, encoder, estimator


def _loss_and_gradients(unet, encoder, estimator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = tiny_images(4)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.tensor([3, 250, 600, 999])
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    loss = pdae_training_loss(unet, encoder, estimator, scheduler, images, noise, timesteps)
    loss.mean().backward()
    return loss.detach(), [p.grad.clone() for model in (encoder, estimator) for p in model.parameters()]


def _compile(backend: str, *modules):
    torch._dynamo.reset()
    for module in modules:
        module.compile(backend=backend)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_compiled_training_step_gives_the_eager_loss_and_gradients(backend):
    eager_loss, eager_grads = _loss_and_gradients(*_models())
    unet, encoder, estimator = _models()
    _compile(backend, unet, encoder, estimator)
    compiled_loss, compiled_grads = _loss_and_gradients(unet, encoder, estimator)
    assert unet._compiled_call_impl is not None  # really compiled, not silently eager
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-6)
    assert len(compiled_grads) == len(eager_grads)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-3, atol=1e-6)


def test_a_compiled_pipeline_decodes_and_inverts_as_the_eager_one():
    def pipeline():
        unet, encoder, estimator = _models()
        scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
        pipe = PDAEPipeline(unet.eval(), scheduler, encoder.eval(), estimator.eval())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    images = tiny_images(2)
    eager = pipeline().reconstruct(images, num_inference_steps=5, output_type="latent").images
    pipe = pipeline()
    _compile("aot_eager", pipe.unet, pipe.encoder, pipe.gradient_estimator)
    compiled = pipe.reconstruct(images, num_inference_steps=5, output_type="latent").images
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["no", "aot_eager"])
def test_the_frozen_unet_follows_accelerates_dynamo_setting(backend):
    unet = tiny_unet()
    try:
        returned = compile_frozen_model(_accelerator(backend), unet)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert returned is unet and type(unet).__name__ == "UNet2DModel"
    assert (unet._compiled_call_impl is not None) == (backend != "no")


def _accelerator(backend: str) -> Accelerator:
    AcceleratorState._reset_state(reset_partial_state=True)  # the state is a process-wide singleton
    return Accelerator(dynamo_backend=backend, cpu=True)


def test_compiled_runs_drop_the_short_last_batch_that_would_recompile_them():
    try:
        assert drop_last_batch(_accelerator("aot_eager"), dataset_size=100, batch_size=32)
        assert not drop_last_batch(_accelerator("aot_eager"), dataset_size=20, batch_size=32)  # nothing would be left
        assert not drop_last_batch(_accelerator("no"), dataset_size=100, batch_size=32)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
def test_train_pdae_under_accelerates_dynamo_option_saves_plain_models(tmp_path, tiny_dpm):
    out = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_DYNAMO_BACKEND": "aot_eager", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, str(REPO / "examples" / "train_pdae.py"), "--pretrained_model_name_or_path", tiny_dpm,
        "--bundled_mnist", "--resolution", "16", "--output_dir", str(out), "--max_train_steps", "3",
        "--train_batch_size", "4", "--checkpointing_steps", "2", "--use_ema", "--num_validation_images", "2",
        "--validation_inference_steps", "2", "--latent_dim", "8",
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True)
    info = (out / "training_info.json").read_text()
    assert '"dynamo_backend": "AOT_EAGER"' in info
    pipe = PDAEPipeline.from_pretrained(out)
    assert type(pipe.encoder).__name__ == "PDAEEncoder"
    assert "_orig_mod" not in (out / "checkpoint-2" / "encoder" / "config.json").read_text()
