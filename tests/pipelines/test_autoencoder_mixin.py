"""What both autoencoder pipelines inherit from `ImageAutoencoderPipelineMixin`: one surface (defaults), and the
editing methods built on the shared inversion and decoding, on tiny random models of each."""

import inspect

import pytest
import torch

from diffusers_pdae import DiffAEPipeline, PDAEPipeline
from diffusers_pdae.pipelines.autoencoder import DEFAULT_INFERENCE_STEPS

from ..conftest import LATENT_DIM, tiny_images, tiny_pipeline
from .test_pipeline_diffae import tiny_diffae_pipeline

PUBLIC_METHODS = ("encode", "invert", "__call__", "decode", "reconstruct", "interpolate", "manipulate", "sample_codes")


@pytest.mark.parametrize("pipeline_class", [PDAEPipeline, DiffAEPipeline])
def test_every_public_method_has_the_same_defaults(pipeline_class):
    checked = 0
    for name in PUBLIC_METHODS:
        method = getattr(pipeline_class, name, None)
        if method is None:
            continue
        parameters = inspect.signature(method).parameters
        for steps in ("num_inference_steps", "code_num_inference_steps"):
            if steps in parameters:
                assert parameters[steps].default == DEFAULT_INFERENCE_STEPS == 50, (name, steps)
                checked += 1
        if "output_type" in parameters:
            assert parameters["output_type"].default == "pil", name
            checked += 1
    assert checked >= 9


@pytest.mark.parametrize("make_pipeline", [tiny_pipeline, tiny_diffae_pipeline], ids=["pdae", "diffae"])
def test_interpolate_and_manipulate_start_from_the_reconstructions(make_pipeline):
    pipeline = make_pipeline()
    images = tiny_images(2)
    frames = pipeline.interpolate(images[0], images[1], num=4, num_inference_steps=5, output_type="pt").images
    ends = pipeline.reconstruct(images, 5, output_type="pt").images
    assert frames.shape == (4, 1, 16, 16)
    assert torch.allclose(frames[0], ends[0], atol=1e-5) and torch.allclose(frames[-1], ends[1], atol=1e-5)
    direction = torch.randn(LATENT_DIM, generator=torch.Generator().manual_seed(0))
    edited = pipeline.manipulate(images, direction, [0.0, 2.0], num_inference_steps=5, output_type="pt").images
    assert edited.shape == (4, 1, 16, 16)
    assert torch.allclose(edited[0], ends[0], atol=1e-5) and torch.allclose(edited[2], ends[1], atol=1e-5)
    assert not torch.allclose(edited[1], ends[0], atol=1e-3)


def test_diffae_decoding_needs_codes():
    pipeline = tiny_diffae_pipeline()
    with pytest.raises(ValueError, match=r"z must be a tensor of shape \(batch_size, 8\)"):
        pipeline.decode(torch.randn(2, 1, 16, 16), None, num_inference_steps=2, output_type="pt")
