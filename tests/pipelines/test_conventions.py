"""diffusers' conventions on our classes: return_dict outputs, num_images_per_prompt, step callbacks, offload order,
and DPMs predicting eps, v or x_0."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, EulerDiscreteScheduler, UNet2DModel
from diffusers.callbacks import PipelineCallback
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from diffusers_pdae import GradientEstimator, PDAEPipeline
from diffusers_pdae.models import GradientEstimatorOutput, PDAEEncoderOutput
from diffusers_pdae.pdae_math import noise_from_model_output
from diffusers_pdae.training import pdae_training_loss

from ..conftest import LATENT_DIM, perturb_output, smooth, tiny_encoder, tiny_images, tiny_pipeline, tiny_unet


def test_models_return_base_outputs_or_tuples():
    encoder = tiny_encoder()
    images = tiny_images(2)
    output = encoder(images)
    assert isinstance(output, PDAEEncoderOutput) and output.z.shape == (2, LATENT_DIM)
    assert torch.equal(encoder(images, return_dict=False)[0], output.z) and output.to_tuple()[0] is output.z
    pipeline = tiny_pipeline()
    features = pipeline.unet(images, 10)  # any UNet pass; G's own output type is checked below
    assert features.sample.shape == images.shape
    estimator = pipeline.gradient_estimator
    from diffusers_pdae.models import frozen_denoiser

    captured = frozen_denoiser(pipeline.unet).forward_with_features(images, torch.tensor([10, 10])).features
    args = (captured, output.z)
    assert isinstance(estimator(*args), GradientEstimatorOutput)
    assert torch.equal(estimator(*args, return_dict=False)[0], estimator(*args).sample)


def test_every_image_method_returns_image_pipeline_output_or_a_tuple():
    pipe = tiny_pipeline()
    images = tiny_images(2)
    z, latents = pipe.encode(images), torch.randn(2, 1, 16, 16)
    calls = {
        "__call__": lambda **kw: pipe(z=z, latents=latents, num_inference_steps=2, **kw),
        "decode": lambda **kw: pipe.decode(latents, z, 2, **kw),
        "reconstruct": lambda **kw: pipe.reconstruct(images, 2, **kw),
        "interpolate": lambda **kw: pipe.interpolate(images[0], images[1], num=3, num_inference_steps=2, **kw),
        "manipulate": lambda **kw: pipe.manipulate(images, torch.ones(LATENT_DIM), [0.0], 2, **kw),
    }
    for name, call in calls.items():
        for output_type, kind in (("pil", list), ("np", object), ("pt", torch.Tensor), ("latent", torch.Tensor)):
            result = call(output_type=output_type)
            assert isinstance(result, ImagePipelineOutput), name
            assert isinstance(result.images, kind), (name, output_type)
        as_tuple = call(output_type="pt", return_dict=False)
        assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], call(output_type="pt").images), name


def test_num_images_per_prompt_decodes_each_code_several_times():
    pipe = tiny_pipeline()
    z = pipe.encode(tiny_images(2))
    generator = torch.Generator().manual_seed(0)
    images = pipe(z=z, num_images_per_prompt=3, num_inference_steps=2, generator=generator, output_type="pt").images
    assert images.shape == (6, 1, 16, 16)
    # the same as decoding the repeated codes from the same x_T
    latents = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    repeated = z.repeat_interleave(3, dim=0)
    assert torch.equal(images, pipe(z=repeated, latents=latents, num_inference_steps=2, output_type="pt").images)
    assert pipe(batch_size=2, num_images_per_prompt=2, num_inference_steps=2, output_type="pt").images.shape[0] == 4
    with pytest.raises(ValueError, match="batch_size=3 conflicts with the 2 codes"):
        pipe(z=z, batch_size=3, num_inference_steps=2)
    with pytest.raises(ValueError, match="latents has 2 samples but 6 are decoded"):
        pipe(z=z, latents=torch.randn(2, 1, 16, 16), num_images_per_prompt=3, num_inference_steps=2)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe(z=z, num_images_per_prompt=0, num_inference_steps=2)


def test_step_callbacks_see_and_may_replace_the_tensors():
    pipe = tiny_pipeline()
    z = pipe.encode(tiny_images(2))
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []

    def record(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), sorted(tensors), pipeline.num_timesteps))
        return {}

    pipe(z=z, latents=latents, num_inference_steps=3, callback_on_step_end=record,
         callback_on_step_end_tensor_inputs=["latents", "z"])  # fmt: skip
    assert [s[:2] for s in seen] == [(0, 666), (1, 333), (2, 0)] and seen[0][2] == ["latents", "z"] and seen[0][3] == 3

    def zero_at_last_step(pipeline, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else {}

    out = pipe(z=z, latents=latents, num_inference_steps=3, callback_on_step_end=zero_at_last_step, output_type="pt")
    assert torch.equal(out.images, torch.full_like(out.images, 0.5))

    def stop_after_first(pipeline, step, timestep, tensors):
        pipeline._interrupt = True
        return {}

    after_first = {}

    def keep_first(pipeline, step, timestep, tensors):
        after_first.setdefault("latents", tensors["latents"].clone())
        return {}

    pipe(z=z, latents=latents, num_inference_steps=3, callback_on_step_end=keep_first)
    stopped = pipe(
        z=z, latents=latents, num_inference_steps=3, callback_on_step_end=stop_after_first, output_type="latent"
    )
    assert torch.equal(stopped.images, after_first["latents"]) and pipe.interrupt

    class Scale(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return {"latents": callback_kwargs["latents"] * 0}

    assert torch.equal(pipe(z=z, latents=latents, num_inference_steps=2, output_type="latent",
                            callback_on_step_end=Scale()).images, torch.zeros_like(latents))  # fmt: skip
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        pipe(z=z, num_inference_steps=2, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["noise"])


def test_offload_keeps_the_models_of_every_step_on_the_device():
    # UNet and G run at every step: G is excluded from offloading and the UNet ends the chain, so neither moves
    # between steps (checked on a GPU by benchmarks/check_offload.py). The optional latent sampler runs once, before
    # the denoising loop; the optional autoencoder first, so that the encoder moves it off before the loop.
    # The frozen model (a unet, or a transformer: one is None and skipped) ends the chain.
    assert PDAEPipeline.model_cpu_offload_seq.split("->")[-2:] == ["unet", "transformer"]
    assert PDAEPipeline.model_cpu_offload_seq == "vae->encoder->latent_sampler->unet->transformer"
    # The stored prompt embedding (a few kilobytes) is read at every step too, and never worth moving.
    assert PDAEPipeline._exclude_from_cpu_offload == ["gradient_estimator", "prompt_embedding"]
    assert set(PDAEPipeline._callback_tensor_inputs) == {"latents", "z"}


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_noise_from_model_output_inverts_each_parameterisation(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 1, 4, 4, generator=generator), torch.randn(3, 1, 4, 4, generator=generator)
    t = torch.tensor([1, 500, 999])
    x_t = scheduler.add_noise(x0, noise, t)
    target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}[prediction_type]
    recovered = noise_from_model_output(target, x_t, t, scheduler.betas, prediction_type)
    assert torch.allclose(recovered, noise, atol=1e-3 if prediction_type == "sample" else 1e-5)


class ReparameterisedUNet(UNet2DModel):
    """An eps-predicting UNet whose output is re-expressed as v or x_0: what a DPM trained to predict those would
    output if it had learnt the same denoiser."""

    prediction_type = "epsilon"
    betas = None

    def forward(self, sample, timestep, *args, **kwargs):
        output = super().forward(sample, timestep, *args, **kwargs)
        abar = torch.cumprod(1 - self.betas.double(), 0)[torch.as_tensor(timestep).long()].float().reshape(-1, 1, 1, 1)
        eps = output.sample
        x0 = (sample - (1 - abar).sqrt() * eps) / abar.sqrt()
        if self.prediction_type == "v_prediction":
            output.sample = abar.sqrt() * eps - (1 - abar).sqrt() * x0
        elif self.prediction_type == "sample":
            output.sample = x0
        return output


def pipeline_predicting(prediction_type: str, scheduler_class=DDIMScheduler) -> PDAEPipeline:
    base = smooth(tiny_unet())
    scheduler = scheduler_class(num_train_timesteps=1000, prediction_type=prediction_type)
    unet = ReparameterisedUNet.from_config(base.config)
    unet.load_state_dict(base.state_dict())
    unet.prediction_type, unet.betas = prediction_type, scheduler.betas
    torch.manual_seed(3)
    estimator = perturb_output(GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, noise_scheduler=scheduler))
    pipe = PDAEPipeline(unet.eval(), scheduler, tiny_encoder(), estimator)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_dpms_predicting_v_or_x0_are_served_exactly(prediction_type):
    reference, pipe = pipeline_predicting("epsilon"), pipeline_predicting(prediction_type)
    images = tiny_images(2) * 0.5
    x_t = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    z = pipe.encode(images)
    for t in (1, 400, 999):
        torch.testing.assert_close(
            pipe.predict_noise(x_t, t, z), reference.predict_noise(x_t, t, z), atol=2e-4, rtol=0
        )
    x_T = pipe.invert(images, z, num_inference_steps=50)
    torch.testing.assert_close(x_T, reference.invert(images, z, num_inference_steps=50), atol=1e-3, rtol=0)
    decoded = pipe.decode(x_T, z, 50, output_type="latent").images
    reference_round_trip = reference.decode(x_T, z, 50, output_type="latent").images
    torch.testing.assert_close(decoded, reference_round_trip, atol=1e-3, rtol=0)
    # a non-DDIM scheduler of the same prediction type is stepped with eps, and the user's scheduler is unchanged
    euler, euler_reference = (
        pipeline_predicting(prediction_type, EulerDiscreteScheduler),
        pipeline_predicting("epsilon", EulerDiscreteScheduler),
    )
    latents = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    sampled = euler(z=z, latents=latents, num_inference_steps=5, output_type="latent").images
    expected = euler_reference(z=z, latents=latents, num_inference_steps=5, output_type="latent").images
    torch.testing.assert_close(sampled, expected, atol=1e-3, rtol=0)
    assert euler.scheduler.config.prediction_type == prediction_type


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_training_on_a_v_or_x0_dpm_reduces_the_loss(prediction_type):
    unet = tiny_unet().requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    torch.manual_seed(0)
    encoder = tiny_encoder().train()
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, noise_scheduler=scheduler).train()
    optimizer = torch.optim.Adam([*encoder.parameters(), *estimator.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    images = tiny_images(8)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(100, 900, (8,), generator=generator)

    def loss() -> torch.Tensor:
        return pdae_training_loss(unet, encoder, estimator, scheduler, images, noise, timesteps).mean()

    first = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.7 * first


def test_the_generic_loader_runs_the_saved_code_only_when_trusted(tmp_path, monkeypatch):
    """The Hub's "Use this model" form: `_class_name` names the saved pipeline file, which diffusers runs only with
    trust_remote_code (even with the package installed)."""
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "pipe", trust_remote_code=True)
    assert type(loaded).__name__ == "PDAEPipeline" and type(loaded) is not PDAEPipeline  # the folder's own class
    images = tiny_images(2)
    assert torch.equal(loaded.encode(images), pipe.encode(images))


def test_components_devices_dtypes_and_variants_behave_as_in_diffusers(tmp_path):
    pipe = tiny_pipeline()
    required = {"unet", "scheduler", "encoder", "gradient_estimator"}
    optional = {"latent_sampler", "latent_scheduler", "vae", "prompt_embedding", "transformer"}
    assert set(pipe.components) == required | optional  # optional ones, as None
    assert all(pipe.components[name] is None for name in optional)
    rebuilt = PDAEPipeline(**pipe.components)
    images = tiny_images(2)
    assert torch.equal(rebuilt.encode(images), pipe.encode(images))
    assert pipe.to("cpu").device.type == "cpu"
    low = tiny_pipeline().to(torch.bfloat16)
    assert low.dtype == torch.bfloat16 and low.encoder.dtype == torch.bfloat16
    decoded = low(z=low.encode(images), num_inference_steps=2, output_type="latent").images
    assert decoded.dtype == torch.bfloat16 and torch.isfinite(decoded.float()).all()
    pipe.save_pretrained(tmp_path / "variant", variant="fp16")
    assert (tmp_path / "variant" / "encoder" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = PDAEPipeline.from_pretrained(tmp_path / "variant", variant="fp16", dtype=torch.float64)
    assert loaded.encoder.dtype == torch.float64
    assert torch.allclose(loaded.encode(images.double()).float(), pipe.encode(images), atol=1e-5)


def test_models_save_load_and_run_deterministically(tmp_path):
    encoder = tiny_encoder()
    images = tiny_images(3)
    assert torch.equal(encoder(images).z, encoder(images).z)
    encoder.save_pretrained(tmp_path / "encoder", variant="bf16")
    loaded = type(encoder).from_pretrained(tmp_path / "encoder", variant="bf16", dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16
    assert json.loads(loaded.to_json_string()) | {"_name_or_path": None} == json.loads(encoder.to_json_string()) | {
        "_name_or_path": None
    }
    assert torch.allclose(loaded(images).z.float(), encoder(images).z, atol=0.05)
