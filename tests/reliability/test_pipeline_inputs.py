"""Bad arguments to the pipeline's methods: each is refused at once, naming the argument, before any UNet evaluation;
and the valid edge cases next to them give the right result."""

import pytest
import torch

from ..conftest import LATENT_DIM, tiny_images
from .conftest import (
    CLEAR,
    EMPTY_KW,
    HANDLED,
    NONFINITE,
    SIZE,
    STEPS_KW,
    UNetCounter,
    assert_clear_error,
    codes,
    names_one_of,
    noise,
    poisoned,
)

pytestmark = pytest.mark.reliability(area="pipeline")

STEPS = 2  # DDIM steps where the step count is not the point
NAN, INF = float("nan"), float("inf")


def call(**kwargs):
    """`pipe(**kwargs)` with two steps and tensor output unless given."""
    return lambda pipe: pipe(**{"num_inference_steps": STEPS, "output_type": "pt", **kwargs})


# --------------------------------------------------------------------------------------------- non-finite inputs


@CLEAR
@pytest.mark.parametrize(
    "what, run, keywords",
    [
        pytest.param(
            "encode an image tensor holding one NaN pixel",
            lambda pipe: pipe.encode(poisoned(tiny_images(), NAN)),
            NONFINITE,
            id="encode-nan-image",
        ),
        pytest.param(
            "encode an image tensor holding one +inf pixel",
            lambda pipe: pipe.encode(poisoned(tiny_images(), INF)),
            NONFINITE,
            id="encode-inf-image",
        ),
        pytest.param(
            "reconstruct an image tensor holding one NaN pixel",
            lambda pipe: pipe.reconstruct(poisoned(tiny_images(), NAN), num_inference_steps=STEPS, output_type="pt"),
            NONFINITE,
            id="reconstruct-nan-image",
        ),
        pytest.param(
            "`__call__` with a code z holding a NaN",
            call(z=poisoned(codes(), NAN)),
            [*NONFINITE, r"\bz\b"],
            id="call-nan-z",
        ),
        pytest.param(
            "`__call__` with latents x_T holding +inf",
            call(latents=poisoned(noise(), INF)),
            [*NONFINITE, "latents"],
            id="call-inf-latents",
        ),
        pytest.param(
            "decode with a code z holding a NaN",
            lambda pipe: pipe.decode(noise(), poisoned(codes(), NAN), num_inference_steps=STEPS, output_type="pt"),
            [*NONFINITE, r"\bz\b"],
            id="decode-nan-z",
        ),
        pytest.param(
            "invert with a given code z holding a NaN",
            lambda pipe: pipe.invert(tiny_images(), z=poisoned(codes(), NAN), num_inference_steps=STEPS),
            [*NONFINITE, r"\bz\b"],
            id="invert-nan-z",
        ),
        pytest.param(
            "manipulate along a direction holding a NaN",
            lambda pipe: pipe.manipulate(
                tiny_images(1),
                poisoned(torch.ones(LATENT_DIM), NAN),
                [0.0, 1.0],
                num_inference_steps=STEPS,
                output_type="pt",
            ),
            [*NONFINITE, "direction"],
            id="manipulate-nan-direction",
        ),
    ],
)
def test_a_non_finite_input_is_refused_by_name(pipe, what, run, keywords):
    """{what}: refused naming the argument and NaN/inf."""
    assert_clear_error(lambda: run(pipe), keywords, pipe)


# ------------------------------------------------------------------------------------------- num_inference_steps


def steps_call(method: str, steps):
    x = tiny_images(1)
    return {
        "__call__": lambda pipe: pipe(num_inference_steps=steps, output_type="pt"),
        "invert": lambda pipe: pipe.invert(x, num_inference_steps=steps),
        "decode": lambda pipe: pipe.decode(noise(1), codes(1), num_inference_steps=steps, output_type="pt"),
        "reconstruct": lambda pipe: pipe.reconstruct(x, num_inference_steps=steps, output_type="pt"),
        "interpolate": lambda pipe: pipe.interpolate(
            x, tiny_images(1, seed=9), num=3, num_inference_steps=steps, output_type="pt"
        ),
        "manipulate": lambda pipe: pipe.manipulate(
            x, torch.ones(LATENT_DIM), [0.0, 1.0], num_inference_steps=steps, output_type="pt"
        ),
    }[method]


STEP_CASES = [
    ("__call__", 0, "call-zero"),
    ("__call__", -3, "call-negative"),
    ("__call__", 2.5, "call-float"),
    ("__call__", "10", "call-string"),
    ("__call__", True, "call-bool"),
    ("__call__", 1001, "call-above-train"),
    ("invert", 0, "invert-zero"),
    ("invert", -3, "invert-negative"),
    ("invert", 2.5, "invert-float"),
    ("invert", 1001, "invert-above-train"),
    ("decode", 0, "decode-zero"),
    ("decode", "10", "decode-string"),
    ("decode", True, "decode-bool"),
    ("reconstruct", 0, "reconstruct-zero"),
    ("reconstruct", True, "reconstruct-bool"),
    ("interpolate", 0, "interpolate-zero"),
    ("interpolate", -3, "interpolate-negative"),
    ("manipulate", 0, "manipulate-zero"),
    ("manipulate", True, "manipulate-bool"),
]


@CLEAR
@pytest.mark.parametrize("method, steps", [pytest.param(m, s, id=i) for m, s, i in STEP_CASES])
def test_num_inference_steps_outside_1_to_T_is_refused(pipe, method, steps):
    """`{method}` with `num_inference_steps={steps!r}`: refused naming num_inference_steps."""
    assert_clear_error(lambda: steps_call(method, steps)(pipe), STEPS_KW, pipe)


@CLEAR
def test_reconstruct_with_negative_steps_does_not_echo_the_input(pipe):
    """reconstruct with num_inference_steps=-3: refused, not the input returned as a 'perfect' reconstruction."""
    assert_clear_error(
        lambda: pipe.reconstruct(tiny_images(2), num_inference_steps=-3, output_type="pt"), STEPS_KW, pipe
    )


# ------------------------------------------------------------------------------------------------------------ eta


@CLEAR
@pytest.mark.parametrize("eta", [pytest.param(-0.1, id="negative"), pytest.param(1.5, id="above-one"),
                                 pytest.param(NAN, id="nan")])  # fmt: skip
def test_eta_outside_0_1_is_refused(pipe, eta):
    """`__call__` with eta={eta}: refused naming eta."""
    run = call(batch_size=1, eta=eta, generator=torch.Generator().manual_seed(0))
    assert_clear_error(lambda: run(pipe), [r"\beta\b"], pipe)


@HANDLED
def test_eta_one_with_a_seeded_generator_is_finite_and_reproducible(pipe):
    """`__call__` with eta=1.0 and a seeded generator: finite and reproducible."""

    def run():
        generator = torch.Generator().manual_seed(0)
        return pipe(batch_size=2, num_inference_steps=3, eta=1.0, generator=generator, output_type="pt").images

    first, second = run(), run()
    assert torch.isfinite(first).all() and torch.equal(first, second)


# ---------------------------------------------------------------------------------------------------- shift_range


@CLEAR
@pytest.mark.parametrize(
    "shift_range",
    [
        pytest.param((700, 400), id="reversed"),
        pytest.param((-5, 100), id="negative"),
        pytest.param((0, 1000), id="past-last-timestep"),
        pytest.param(500, id="number"),
        pytest.param((1, 2, 3), id="three-values"),
    ],
)
def test_a_shift_range_outside_the_timesteps_is_refused(pipe, shift_range):
    """`__call__` with shift_range={shift_range!r}: refused naming shift_range."""
    run = call(z=codes(), shift_range=shift_range)
    assert_clear_error(lambda: run(pipe), ["shift_range"], pipe)


@CLEAR
def test_decode_refuses_a_reversed_shift_range(pipe):
    """decode with shift_range=(700, 400): refused naming shift_range."""
    assert_clear_error(
        lambda: pipe.decode(noise(), codes(), num_inference_steps=STEPS, shift_range=(700, 400), output_type="pt"),
        ["shift_range"],
        pipe,
    )


@HANDLED
def test_the_full_shift_range_equals_no_shift_range(pipe):
    """`__call__` with shift_range=(0, 999) gives the same images as no shift_range."""
    z, x_T = codes(), noise()

    def run(shift_range):
        return pipe(z=z, latents=x_T, num_inference_steps=3, shift_range=shift_range, output_type="pt").images

    assert torch.allclose(run((0, 999)), run(None), atol=1e-6)


# ----------------------------------------------------------------------------------------------------- generators


@CLEAR
@pytest.mark.parametrize("batch_size, count", [pytest.param(2, 3, id="too-many"), pytest.param(3, 2, id="too-few")])
def test_a_list_of_generators_of_another_length_than_the_batch_is_refused(pipe, batch_size, count):
    """`__call__` with batch_size={batch_size} and a list of {count} generators: refused naming generator."""
    run = call(batch_size=batch_size, generator=[torch.Generator().manual_seed(i) for i in range(count)])
    assert_clear_error(lambda: run(pipe), ["generator"], pipe)


@HANDLED
def test_per_sample_generators_reproduce_the_single_samples(pipe):
    """A list of per-sample generators: each sample equals the one its generator gives alone."""
    batch = pipe(
        batch_size=2,
        generator=[torch.Generator().manual_seed(i) for i in (10, 11)],
        num_inference_steps=STEPS,
        output_type="pt",
    ).images
    single = pipe(
        batch_size=1, generator=torch.Generator().manual_seed(11), num_inference_steps=STEPS, output_type="pt"
    ).images
    assert torch.allclose(batch[1:2], single, atol=1e-5)


# ------------------------------------------------------------------------------- interpolate / manipulate arguments


@CLEAR
@pytest.mark.parametrize("num", [1, 0])
def test_interpolate_refuses_fewer_than_two_images(pipe, num):
    """interpolate with num={num}: refused naming num."""
    assert_clear_error(
        lambda: pipe.interpolate(
            tiny_images(1), tiny_images(1, seed=9), num=num, num_inference_steps=STEPS, output_type="pt"
        ),
        [r"\bnum\b"],
        pipe,
    )


@CLEAR
def test_interpolate_refuses_a_batch_as_image_a(pipe):
    """interpolate with two images passed as image_a: refused naming image_a."""
    assert_clear_error(
        lambda: pipe.interpolate(tiny_images(2), tiny_images(1), num=3, num_inference_steps=STEPS, output_type="pt"),
        ["image_a", "one image"],
        pipe,
    )


@CLEAR
def test_manipulate_refuses_an_empty_list_of_scales(pipe):
    """manipulate with scales=[]: refused naming scales."""
    assert_clear_error(
        lambda: pipe.manipulate(
            tiny_images(1), torch.ones(LATENT_DIM), [], num_inference_steps=STEPS, output_type="pt"
        ),
        ["scales"],
        pipe,
    )


@CLEAR
def test_manipulate_refuses_a_nan_scale(pipe):
    """manipulate with scales=[0.0, nan]: refused naming scales."""
    assert_clear_error(
        lambda: pipe.manipulate(
            tiny_images(1), torch.ones(LATENT_DIM), [0.0, NAN], num_inference_steps=STEPS, output_type="pt"
        ),
        ["scales", *NONFINITE],
        pipe,
    )


@CLEAR
def test_manipulate_refuses_a_direction_of_another_width(pipe):
    """manipulate with a direction of latent_dim + 1 entries: refused naming direction."""
    assert_clear_error(
        lambda: pipe.manipulate(
            tiny_images(1), torch.ones(LATENT_DIM + 1), [1.0], num_inference_steps=STEPS, output_type="pt"
        ),
        ["direction"],
        pipe,
    )


# -------------------------------------------------------------------------------------------------- empty batches


@CLEAR
@pytest.mark.parametrize(
    "what, run",
    [
        pytest.param(
            "encode a batch of 0 images, tensor (0, 1, 16, 16)",
            lambda pipe: pipe.encode(torch.zeros(0, 1, SIZE, SIZE)),
            id="encode-empty-tensor",
        ),
        pytest.param(
            "reconstruct a batch of 0 images, tensor (0, 1, 16, 16)",
            lambda pipe: pipe.reconstruct(torch.zeros(0, 1, SIZE, SIZE), num_inference_steps=STEPS, output_type="pt"),
            id="reconstruct-empty-tensor",
        ),
        pytest.param("encode an empty list of images", lambda pipe: pipe.encode([]), id="encode-empty-list"),
    ],
)
def test_an_empty_batch_of_images_is_refused(pipe, what, run):
    """{what}: refused as empty."""
    assert_clear_error(lambda: run(pipe), EMPTY_KW, pipe)


@CLEAR
@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(pipe, batch_size):
    """`__call__` with batch_size={batch_size}: refused naming batch_size."""
    assert_clear_error(lambda: call(batch_size=batch_size)(pipe), ["batch_size"], pipe)


# ------------------------------------------------------------------------------------------ predict_noise timesteps


@CLEAR
@pytest.mark.parametrize(
    "timestep, with_z",
    [
        pytest.param(-1, True, id="minus-one"),
        pytest.param(1000, True, id="1000"),
        pytest.param(-1, False, id="minus-one-no-z"),
    ],
)
def test_predict_noise_refuses_a_timestep_outside_0_to_T(pipe, timestep, with_z):
    """predict_noise at timestep {timestep} (with z: {with_z}): refused naming timestep."""
    z = codes() if with_z else None
    assert_clear_error(lambda: pipe.predict_noise(noise(), timestep, z), ["timestep"], pipe)


@HANDLED
def test_predict_noise_accepts_a_fractional_timestep(pipe):
    """predict_noise at timestep 2.5 with z: accepted (Euler-type schedulers step at fractional timesteps), finite."""
    eps = pipe.predict_noise(noise(), 2.5, codes())
    assert eps.shape == (2, 1, SIZE, SIZE) and torch.isfinite(eps).all()


# ---------------------------------------------------------------------------------------------------- output_type


@CLEAR
def test_call_with_an_unknown_output_type_fails_before_1000_steps(pipe):
    """`__call__` with output_type='jpg' and 1000 steps: refused naming output_type, at once (under 2 s)."""
    assert_clear_error(
        lambda: pipe(batch_size=1, num_inference_steps=1000, output_type="jpg"), ["output_type"], pipe, max_seconds=2.0
    )


@CLEAR
def test_decode_with_an_unknown_output_type_fails_before_denoising(pipe):
    """decode with output_type='jpg': refused naming output_type before denoising."""
    assert_clear_error(
        lambda: pipe.decode(noise(1), codes(1), num_inference_steps=50, output_type="jpg"), ["output_type"], pipe
    )


@CLEAR
def test_interpolate_with_an_unknown_output_type_fails_before_inversion(pipe):
    """interpolate with output_type='jpg': refused naming output_type before inversion."""
    assert_clear_error(
        lambda: pipe.interpolate(
            tiny_images(1), tiny_images(1, seed=9), num=3, num_inference_steps=10, output_type="jpg"
        ),
        ["output_type"],
        pipe,
    )


# ----------------------------------------------------------------------------------------------- codes and latents


@CLEAR
@pytest.mark.parametrize(
    "what, run, keywords",
    [
        pytest.param(
            "`__call__` with z of width latent_dim + 1",
            call(z=torch.zeros(2, LATENT_DIM + 1)),
            [r"\bz\b", "latent_dim"],
            id="call-z-wrong-width",
        ),
        pytest.param(
            "`__call__` with an integer z (e.g. labels passed by mistake)",
            call(z=torch.ones(2, LATENT_DIM, dtype=torch.int64)),
            [r"\bz\b", "dtype", "float"],
            id="call-z-int-dtype",
        ),
        pytest.param(
            "`__call__` with 2 codes and 3 latents",
            call(z=codes(2), latents=noise(3)),
            [r"\bz\b", "latents"],
            id="call-z-latents-batch-mismatch",
        ),
        pytest.param(
            "invert 2 images with 3 codes",
            lambda pipe: pipe.invert(tiny_images(2), z=codes(3), num_inference_steps=STEPS),
            [r"\bz\b"],
            id="invert-z-batch-mismatch",
        ),
        pytest.param(
            "`__call__` with latents (1, 1, 8, 8) for a 16x16 UNet",
            call(latents=torch.randn(1, 1, 8, 8)),
            ["latents"],
            id="call-latents-wrong-size",
        ),
        pytest.param(
            "decode with unbatched latents (1, 16, 16)",
            lambda pipe: pipe.decode(
                torch.randn(1, SIZE, SIZE), codes(1), num_inference_steps=STEPS, output_type="pt"
            ),
            ["latents"],
            id="decode-latents-3d",
        ),
    ],
)
def test_codes_or_latents_of_the_wrong_shape_or_type_are_refused(pipe, what, run, keywords):
    """{what}: refused naming z or latents."""
    assert_clear_error(lambda: run(pipe), keywords, pipe)


@HANDLED
def test_codes_may_come_as_a_list_of_per_image_tensors(pipe):
    """`__call__` with z as a list of per-image code tensors: the same images as the stacked tensor."""
    z, x_T = codes(), noise()
    from_list = pipe(z=[z[0], z[1]], latents=x_T, num_inference_steps=STEPS, output_type="pt").images
    from_tensor = pipe(z=z, latents=x_T, num_inference_steps=STEPS, output_type="pt").images
    assert from_list.shape == from_tensor.shape and torch.allclose(from_list, from_tensor, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- image tensors


@CLEAR
@pytest.mark.parametrize(
    "what, run, keywords",
    [
        pytest.param(
            "encode a uint8 image tensor in [0, 255]",
            lambda pipe: pipe.encode(torch.randint(0, 256, (2, 1, SIZE, SIZE), dtype=torch.uint8)),
            ["dtype", "uint8", "float"],
            id="encode-uint8-tensor",
        ),
        pytest.param(
            "encode a float image tensor in [0, 255]",
            lambda pipe: pipe.encode(torch.rand(2, 1, SIZE, SIZE) * 255),
            [r"\[-1, ?1\]", "range", "255"],
            id="encode-float-0-255",
        ),
        pytest.param(
            "encode a 3-channel tensor with a 1-channel UNet",
            lambda pipe: pipe.encode(tiny_images(2, channels=3)),
            ["channel", "shape"],
            id="encode-wrong-channels",
        ),
        pytest.param(
            "reconstruct a 5-D image tensor (1, 2, 1, 16, 16)",
            lambda pipe: pipe.reconstruct(tiny_images(2)[None], num_inference_steps=STEPS, output_type="pt"),
            ["shape", "dimension", "ndim", "5-d"],
            id="reconstruct-5d-tensor",
        ),
    ],
)
def test_an_image_tensor_the_model_cannot_take_is_refused(pipe, what, run, keywords):
    """{what}: refused naming the dtype, range or shape expected."""
    assert_clear_error(lambda: run(pipe), keywords, pipe)


@HANDLED
def test_a_float64_image_tensor_gives_the_codes_of_float32(pipe):
    """encode a float64 image tensor: converted, the same codes as float32."""
    x = tiny_images(2)
    assert torch.allclose(pipe.encode(x.double()), pipe.encode(x), atol=1e-5)


@HANDLED
def test_one_unbatched_image_tensor_is_encoded_as_a_batch_of_one(pipe):
    """encode one unbatched (1, 16, 16) image tensor: codes (1, latent_dim), as the batched call."""
    x = tiny_images(1)
    with UNetCounter(pipe) as counter:
        single = pipe.encode(x[0])
    assert counter.calls == 0  # encoding never runs the UNet
    assert single.shape == (1, LATENT_DIM) and torch.allclose(single, pipe.encode(x), atol=1e-6)


# ------------------------------------------------------------------------- issue 29: the last unclear answers


@CLEAR
@pytest.mark.parametrize(
    "what, run, keywords",
    [
        pytest.param(
            "`__call__` with codes z on the meta device (a shape, no values)",
            call(z=torch.zeros(2, LATENT_DIM, device="meta")),
            [r"\bz\b.*meta"],
            id="call-meta-z",
        ),
        pytest.param(
            "`__call__` with an empty batch of codes z (0, latent_dim)",
            call(z=torch.zeros(0, LATENT_DIM)),
            [r"\bz\b holds no code"],
            id="call-empty-z",
        ),
        pytest.param(
            "`__call__` with z a list of codes of widths 8 and 7",
            call(z=[torch.zeros(LATENT_DIM), torch.zeros(LATENT_DIM - 1)]),
            [r"\bz\b is a list of codes of widths \[7, 8\]"],
            id="call-mixed-width-list",
        ),
        pytest.param(
            "manipulate along a (2, latent_dim) direction",
            lambda pipe: pipe.manipulate(
                tiny_images(1), torch.ones(2, LATENT_DIM), [0.0], num_inference_steps=STEPS, output_type="pt"
            ),
            [rf"direction must be a tensor of shape \({LATENT_DIM},\), got \(2, {LATENT_DIM}\)"],
            id="manipulate-2d-direction",
        ),
        pytest.param(
            "encode an image tensor on the meta device",
            lambda pipe: pipe.encode(torch.zeros(2, 1, SIZE, SIZE, device="meta")),
            ["meta"],
            id="encode-meta-images",
        ),
        pytest.param(
            "`__call__` with num_images_per_prompt=10**6 (no allocation attempted)",
            call(z=codes(1), num_images_per_prompt=10**6),
            [r"num_images_per_prompt=1000000.*GiB"],
            id="call-million-copies",
        ),
    ],
)
def test_codes_directions_and_batch_sizes_that_cannot_work_are_named(pipe, what, run, keywords):
    """{what}: refused at once, naming the argument and what is wrong with it."""
    assert_clear_error(lambda: run(pipe), keywords, pipe, max_seconds=5)


def nan_latents(pipe, step, timestep, tensors):
    return {"latents": torch.full_like(tensors["latents"], float("nan"))}


def a_tensor(pipe, step, timestep, tensors):
    return tensors["latents"]


def smaller_latents(pipe, step, timestep, tensors):
    return {"latents": tensors["latents"][:, :, :8, :8]}


@CLEAR
@pytest.mark.parametrize(
    "callback, keywords",
    [
        pytest.param(nan_latents, [r"'latents' returned by callback_on_step_end has \d+ NaN"], id="nan-latents"),
        pytest.param(a_tensor, [r"callback_on_step_end must return a dict.*got Tensor"], id="returns-a-tensor"),
        pytest.param(smaller_latents, [r"callback_on_step_end returned 'latents' of shape"], id="other-shape"),
    ],
)
def test_a_step_callback_that_breaks_the_latents_is_named_at_its_first_step(pipe, callback, keywords):
    """`__call__` with a callback_on_step_end `{callback.__name__}`: refused after its first step, naming it."""
    with UNetCounter(pipe) as counter, pytest.raises(ValueError) as error:
        pipe(num_inference_steps=5, output_type="pt", callback_on_step_end=callback)
    assert names_one_of(str(error.value), keywords), str(error.value)
    assert counter.calls == 1  # the callback runs after the first step; nothing more is computed


@CLEAR
def test_attribute_direction_between_two_identical_sets_is_refused(pipe):
    """attribute_direction with the same images twice: no direction exists; refused instead of a NaN direction."""
    images = tiny_images(4)
    assert_clear_error(lambda: pipe.attribute_direction(images, images.clone()), [r"same mean code"], pipe)


@CLEAR
def test_a_scheduler_swapped_in_after_construction_is_checked_as_the_constructor_does(pipe):
    """pipe.scheduler = EDMEulerScheduler(): refused at the assignment, as the constructor refuses it."""
    from diffusers import DPMSolverMultistepScheduler, EDMEulerScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # a servable one is taken

    def swap():
        pipe.scheduler = EDMEulerScheduler()

    assert_clear_error(swap, [r"EDMEulerScheduler has no discrete training schedule"], pipe)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)


@CLEAR
def test_a_scheduler_predicting_another_quantity_than_g_was_trained_with_is_refused():
    """A pipeline whose G recorded an eps-predicting DPM, given a v_prediction scheduler: refused naming both."""
    from diffusers import DDIMScheduler

    from diffusers_pdae import GradientEstimator, PDAEPipeline

    from ..conftest import tiny_encoder, tiny_unet

    unet, scheduler = tiny_unet(), DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    estimator = GradientEstimator.from_unet(unet, latent_dim=LATENT_DIM, noise_scheduler=scheduler)
    v_scheduler = DDIMScheduler.from_config(scheduler.config, prediction_type="v_prediction")
    keywords = [r"'prediction_type': 'v_prediction'[\s\S]*'prediction_type': 'epsilon'"]
    assert_clear_error(lambda: PDAEPipeline(unet, v_scheduler, tiny_encoder(), estimator), keywords)
