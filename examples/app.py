"""Try a PDAE pipeline in the browser: a Gradio app over `PDAEPipeline` (needs the `[app]` extra).

    python examples/app.py                                  # the bundled pdae-mnist, on http://127.0.0.1:7860
    python examples/app.py --pipeline path/or/hub-id        # any saved PDAEPipeline folder or Hub repo
    python examples/app.py --num_inference_steps 20         # faster, a little less faithful

Upload or draw a digit and see its reconstruction from the inferred x_T and from its code alone (random x_T), an
interpolation strip to a second digit, edits along stroke-thickness and slant directions (fit without labels on
reference images: the bundled MNIST train digits for one-channel pipelines, or --attribute_images), and new samples.
Every action runs on the server's CPU or GPU; bad pictures are answered with a message, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

import diffusers_pdae  # noqa: F401  (registers the PDAE classes with diffusers)
from diffusers_pdae import PDAEPipeline
from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays, load_mnist_tensors
from diffusers_pdae.evaluation import stratified_indices
from diffusers_pdae.import_utils import require
from diffusers_pdae.interactive import PDAEPlayground, fit_stroke_directions, image_files
from diffusers_pdae.training import positive_int

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = require("gradio", "examples/app.py")

logger = logging.getLogger("pdae-app")
# Multiples of each direction's separation that the attribute sliders span.
EDIT_RANGE = 1.5
# Result pictures: shown, never edited; PNG keeps the model's pixels exact.
RESULT = {"interactive": False, "format": "png", "height": 200}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline", default=checkpoint_path("pdae-mnist"), help="A PDAEPipeline folder or Hub id (default: bundled)."
    )
    parser.add_argument("--num_inference_steps", type=positive_int, default=50, help="DDIM steps of every call.")
    parser.add_argument(
        "--attribute_images",
        default=None,
        help="A folder of at least 8 reference images to fit the attribute directions on (default: 2,000 bundled "
        "MNIST train digits for a one-channel pipeline, none otherwise); 'none' hides the sliders.",
    )
    parser.add_argument(
        "--num_reference_images", type=positive_int, default=2000, help="Bundled digits to fit directions on."
    )
    parser.add_argument("--server_name", default="127.0.0.1", help="0.0.0.0 to serve other machines.")
    parser.add_argument("--server_port", type=positive_int, default=7860)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def reference_images(playground: PDAEPlayground, args: argparse.Namespace) -> torch.Tensor | None:
    """`(N, C, H, W)` images in [-1, 1] to fit the attribute directions on, or None for no sliders."""
    if args.attribute_images == "none":
        return None
    if args.attribute_images is not None:
        pictures = [playground.prepare(PIL.Image.open(path)) for path in image_files(args.attribute_images)]
        return playground.pipeline.prepare_images(pictures).cpu()
    if playground.pipeline.image_shape[0] != 1:
        return None
    _, labels = load_mnist_arrays("train")  # sorted by digit: take every class alike
    indices = stratified_indices(labels, args.num_reference_images)
    images, _ = load_mnist_tensors("train", indices, size=playground.sample_size)
    return images


def example_digits(folder: Path, count: int = 6) -> list[str]:
    """Write the first test digit of each of `count` classes as PNG files (examples to click on); their paths."""
    images, labels = load_mnist_arrays("test")
    paths = []
    for digit in range(count):
        path = folder / f"digit-{digit}.png"
        PIL.Image.fromarray(images[np.flatnonzero(labels == digit)[0]]).save(path)
        paths.append(str(path))
    return paths


def build_playground(args: argparse.Namespace) -> PDAEPlayground:
    pipeline = PDAEPipeline.from_pretrained(args.pipeline).to(args.device)
    playground = PDAEPlayground(pipeline, args.num_inference_steps)
    references = reference_images(playground, args)
    if references is not None:
        playground.directions = fit_stroke_directions(pipeline, references.to(args.device))
    return playground


def picture_input(**kwargs) -> gr.Image:
    """A `gr.Image` upload that answers a file it cannot read as a picture (corrupt, or not an image) with a message on
    the page; the stock component fails before any action runs and shows a bare "Error". (Its preprocess is wrapped
    on the instance: a subclass of a Gradio component makes Gradio write a .pyi file next to this script.)"""
    component = gr.Image(type="pil", image_mode=None, **kwargs)
    read = component.preprocess

    def preprocess(payload):
        try:
            return read(payload)
        except (PIL.UnidentifiedImageError, OSError, ValueError):
            name = getattr(payload, "orig_name", None) or "the upload"
            raise gr.Error(
                f"Cannot read {name} as a picture: upload a PNG, JPEG, BMP or WebP image.", print_exception=False
            ) from None

    component.preprocess = preprocess
    return component


def shown_as_message(action):
    """Turn what goes wrong in an action into a message on the page: the user's mistakes word for word, anything else
    as a short notice (the traceback goes to the server log only)."""

    @functools.wraps(action)
    def wrapped(*inputs, **kwargs):
        try:
            return action(*inputs, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:
            logger.exception("Action %s failed", action.__name__)
            raise gr.Error(
                f"Something went wrong on the server ({type(error).__name__}); the details are in its log.",
                print_exception=False,
            ) from None

    return wrapped


def picked_picture(source: str, uploaded, sketch) -> PIL.Image.Image | None:
    """The picture of the tab in use: the upload, or the sketch's composite (strokes flattened on white)."""
    if source == "draw":
        return None if sketch is None else sketch.get("composite")
    return uploaded


def build_app(playground: PDAEPlayground, title: str, examples: list[str]) -> gr.Blocks:
    directions = playground.directions
    # Gradio swaps this for each call's own tracker, which follows the pipeline's tqdm bars on the page.
    tracked = gr.Progress(track_tqdm=True)

    @shown_as_message
    def reconstruct(source, uploaded, sketch, seed, progress=tracked):
        shown = playground.reconstruct(picked_picture(source, uploaded, sketch), seed=int(seed))
        return shown["input"], shown["inferred"], shown["random"]

    @shown_as_message
    def interpolate(source, uploaded, sketch, second, frames, progress=tracked):
        return playground.interpolate(picked_picture(source, uploaded, sketch), second, num=int(frames))

    @shown_as_message
    def edit(source, uploaded, sketch, *amounts):
        picture = picked_picture(source, uploaded, sketch)
        return playground.edit(picture, dict(zip(directions, amounts, strict=True)))

    @shown_as_message
    def sample(count, seed, progress=tracked):
        return playground.sample(int(count), seed=int(seed))

    with gr.Blocks(title="PDAE demo") as app:
        gr.Markdown(
            f"# PDAE: {title}\nA frozen pre-trained diffusion model, turned into an autoencoder by an encoder and a "
            "gradient estimator. Upload or draw a digit, then press a button. "
            f"Each call runs {playground.num_inference_steps} DDIM steps."
        )
        source = gr.State("upload")
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Upload", id="upload") as upload_tab:
                        uploaded = picture_input(
                            label="Your digit", sources=["upload", "clipboard"], height=280, elem_id="upload"
                        )
                        gr.Examples(examples, inputs=uploaded, label="Or pick a test digit")
                    with gr.Tab("Draw", id="draw") as draw_tab:
                        sketch = gr.Sketchpad(
                            label="Draw a digit (pick the brush on the left first)",
                            type="pil",
                            canvas_size=(280, 280),
                            elem_id="sketch",
                            brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                        )
                upload_tab.select(lambda: "upload", None, source)
                draw_tab.select(lambda: "draw", None, source)
                seed = gr.Number(label="Seed of the random x_T and of the samples", value=0, precision=0)
                reconstruct_button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct")
            with gr.Column():
                with gr.Row():
                    model_input = gr.Image(label="Model input", elem_id="model-input", **RESULT)
                    inferred = gr.Image(label="z + inferred x_T", elem_id="inferred", **RESULT)
                    random = gr.Image(label="z + random x_T", elem_id="random", **RESULT)
        reconstruct_button.click(reconstruct, [source, uploaded, sketch, seed], [model_input, inferred, random])

        with gr.Accordion("Interpolate to a second digit", open=True):
            with gr.Row():
                second = picture_input(label="Second digit", height=200, elem_id="second")
                with gr.Column():
                    frames = gr.Slider(3, 12, value=8, step=1, label="Frames")
                    interpolate_button = gr.Button("Interpolate", elem_id="interpolate")
            strip = gr.Image(label="Slerp on x_T, lerp on z", elem_id="strip", **{**RESULT, "height": 180})
        interpolate_button.click(interpolate, [source, uploaded, sketch, second, frames], strip)

        with gr.Accordion("Edit attributes", open=True, visible=bool(directions)):
            gr.Markdown(
                "Directions in code space, fit without labels on the reference digits' codes: the boldest quarter "
                "against the thinnest, the most right-leaning against the most left-leaning. Unit: the distance "
                "between the two groups' mean codes."
            )
            with gr.Row():
                sliders = [
                    gr.Slider(-EDIT_RANGE, EDIT_RANGE, value=0, step=0.25, label=name, elem_id=f"edit-{name}")
                    for name in directions
                ]
                edited = gr.Image(label="Edited", elem_id="edited", **RESULT)
        for slider in sliders:
            # Dragging fires many changes; "always_last" runs the one the slider rests on after the running one.
            slider.change(edit, [source, uploaded, sketch, *sliders], edited, trigger_mode="always_last")

        with gr.Accordion("Unconditional samples", open=True):
            with gr.Row():
                count = gr.Slider(1, 16, value=8, step=1, label="Samples")
                sample_button = gr.Button("Sample", elem_id="sample")
            samples = gr.Image(label="Sampled codes, decoded", elem_id="samples", **{**RESULT, "height": 360})
        sample_button.click(sample, [count, seed], samples)
    # One model call at a time: the actions share the pipeline and the inversion cache.
    app.queue(default_concurrency_limit=1)
    return app


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    playground = build_playground(args)
    examples = example_digits(Path(tempfile.mkdtemp(prefix="pdae-app-")))
    app = build_app(playground, title=os.path.basename(os.path.normpath(args.pipeline)), examples=examples)
    app.launch(server_name=args.server_name, server_port=args.server_port, theme=gr.themes.Default())


if __name__ == "__main__":
    main()
