"""examples/app.py without a browser: its flags, the component that reads uploads, and how failures reach the page."""

import PIL.Image
import pytest

from diffusers_pdae.bundled import checkpoint_path, load_mnist_arrays

from ..conftest import load_script, tiny_pipeline

gr = pytest.importorskip("gradio", reason="the [app] extra")
app = load_script("app")


def test_defaults_serve_the_bundled_pipeline_locally():
    args = app.parse_args([])
    assert args.pipeline == checkpoint_path("pdae-mnist")
    assert args.server_name == "127.0.0.1" and args.attribute_images is None
    for flag in ("--num_inference_steps", "--num_reference_images", "--server_port"):
        with pytest.raises(SystemExit):
            app.parse_args([flag, "0"])


def test_an_unreadable_upload_becomes_a_message(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    component = app.picture_input()
    payload = gr.data_classes.ImageData(path=str(bad), orig_name="notes.png")
    with pytest.raises(gr.Error, match="Cannot read notes.png as a picture"):
        component.preprocess(payload)
    good = tmp_path / "digit.png"
    PIL.Image.new("L", (28, 28), 0).save(good)
    assert component.preprocess(gr.data_classes.ImageData(path=str(good), orig_name="digit.png")).size == (28, 28)


def test_failures_reach_the_page_as_messages_without_tracebacks():
    @app.shown_as_message
    def refuses():
        raise ValueError("No strokes found: draw a digit.")

    @app.shown_as_message
    def breaks():
        raise RuntimeError("CUDA error: device-side assert at /secret/path.py:12")

    with pytest.raises(gr.Error, match="No strokes found: draw a digit.") as refused:
        refuses()
    assert refused.value.print_exception is False
    with pytest.raises(gr.Error) as broken:
        breaks()
    assert "RuntimeError" in broken.value.message and "/secret/path.py" not in broken.value.message


def test_the_picture_of_the_tab_in_use_is_taken():
    upload, drawing = PIL.Image.new("L", (8, 8)), PIL.Image.new("RGB", (8, 8))
    sketch = {"background": None, "layers": [], "composite": drawing}
    assert app.picked_picture("upload", upload, sketch) is upload
    assert app.picked_picture("draw", upload, sketch) is drawing
    assert app.picked_picture("draw", upload, None) is None


def test_any_pipeline_folder_is_served_with_or_without_reference_pictures(tmp_path):
    folder = tmp_path / "my-pdae"
    tiny_pipeline().save_pretrained(folder)
    args = ["--pipeline", str(folder), "--device", "cpu", "--num_inference_steps", "4"]
    plain = app.build_playground(app.parse_args([*args, "--attribute_images", "none"]))
    assert plain.directions == {} and plain.sample_size == 16
    assert isinstance(app.build_app(plain, "my-pdae", examples=[]), gr.Blocks)  # the sliders' section stays hidden

    pictures = tmp_path / "strokes"
    pictures.mkdir()
    images, _ = load_mnist_arrays("train")
    for index in range(0, 8000, 400):
        PIL.Image.fromarray(images[index]).save(pictures / f"{index}.png")
    fitted = app.build_playground(app.parse_args([*args, "--attribute_images", str(pictures)]))
    assert sorted(fitted.directions) == ["slant", "thickness"]
    assert fitted.reconstruct(PIL.Image.fromarray(images[0]))["inferred"].size == (160, 160)
    with pytest.raises(ValueError, match="give at least 8"):
        app.build_playground(app.parse_args([*args, "--attribute_images", str(tmp_path)]))
