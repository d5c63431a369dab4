"""examples/app.py end to end in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
the page loads, an uploaded digit and a drawn one yield reconstructions, a bad upload shows a message, and the sample
button gives samples. A screenshot of each state is saved to $PDAE_SCREENSHOT_DIR (the docs' pictures come from
`make screenshots`).

`make test-browser` installs the browser first and sets PDAE_REQUIRE_BROWSER=1, so a missing browser fails there;
elsewhere these tests are skipped without one.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from diffusers_pdae.bundled import load_mnist_arrays

from ..conftest import REPO

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Chromium's own calls home are refused on a closed network, many at a time; these flags stop them.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1400",
)
WAIT_SECONDS = 120


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: `make test-browser` installs Debian's chromium and chromium-driver."
    if os.environ.get("PDAE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on the bundled pipeline, on a free local port, with 5 steps ($PDAE_APP_STEPS: more for the docs'
    screenshots); its log goes to a file."""
    _browser_or_skip()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    steps = os.environ.get("PDAE_APP_STEPS", "5")
    command = [sys.executable, str(REPO / "examples" / "app.py"), "--num_inference_steps", steps]
    command += ["--num_reference_images", "400", "--server_port", str(port), "--device", "cpu"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + WAIT_SECONDS
    while f"Running on local URL:  {url[:-1]}" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"The app did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, log_path
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PDAE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    images, labels = load_mnist_arrays("test")
    digit = folder / "three.png"
    PIL.Image.fromarray(images[np.flatnonzero(labels == 3)[0]]).save(digit)
    corrupt = folder / "notes.png"
    corrupt.write_bytes(b"these are notes, not a PNG")
    return {"digit": digit, "corrupt": corrupt}


def _wait(driver, condition, seconds: float = WAIT_SECONDS):
    return WebDriverWait(driver, seconds).until(condition)


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.ID, "reconstruct"))


def _shown_image(driver, elem_id: str):
    """The output image in `#elem_id` once it holds a loaded picture (not just a placeholder)."""

    def loaded(d):
        images = d.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        ready = [i for i in images if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)]
        return ready[0] if ready else False

    return _wait(driver, loaded)


def _pixels(driver, image) -> np.ndarray:
    """The picture an <img> shows, fetched by the page itself, as a grey array."""
    data_url = driver.execute_async_script(
        "const [img, done] = arguments; fetch(img.src).then(r => r.blob()).then(b => {"
        " const reader = new FileReader(); reader.onload = () => done(reader.result); reader.readAsDataURL(b); });",
        image,
    )
    payload = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(PIL.Image.open(io.BytesIO(payload)).convert("L"), dtype=np.float64)


def _toasts(driver) -> list[str]:
    return [toast.text for toast in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")]


def _upload_and_reconstruct(driver, url: str, picture: Path) -> None:
    _open(driver, url)
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(picture))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload img"))
    driver.find_element(By.ID, "reconstruct").click()


def test_page_loads_with_every_section(server, browser, screenshots):
    url, _ = server
    _open(browser, url)
    for elem_id in ("upload", "reconstruct", "interpolate", "edit-thickness", "edit-slant", "sample"):
        _wait(browser, lambda d, elem_id=elem_id: d.find_elements(By.ID, elem_id), seconds=30)
    heading = _wait(browser, lambda d: [h.text for h in d.find_elements(By.TAG_NAME, "h1") if h.text], seconds=30)
    assert heading[0].startswith("PDAE: pdae-mnist")
    browser.save_screenshot(str(screenshots / "app-loaded.png"))


def test_an_uploaded_digit_is_reconstructed(server, browser, screenshots, pictures):
    _upload_and_reconstruct(browser, server[0], pictures["digit"])
    model_input = _pixels(browser, _shown_image(browser, "model-input"))
    inferred = _pixels(browser, _shown_image(browser, "inferred"))
    random = _pixels(browser, _shown_image(browser, "random"))
    assert model_input.shape == inferred.shape == random.shape and model_input.shape[0] >= 32
    # The digit comes back: the inferred x_T reconstruction is close to the input, and closer than z alone.
    error, error_random = np.abs(inferred - model_input).mean(), np.abs(random - model_input).mean()
    assert model_input.std() > 40 and error < 12 and error < error_random
    assert not _toasts(browser)
    browser.save_screenshot(str(screenshots / "app-reconstruction.png"))


def test_an_attribute_slider_edits_the_digit(server, browser, screenshots, pictures):
    _upload_and_reconstruct(browser, server[0], pictures["digit"])
    inferred = _pixels(browser, _shown_image(browser, "inferred"))
    amount = browser.find_element(By.CSS_SELECTOR, "#edit-thickness input[type=number]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", amount)
    amount.send_keys(Keys.CONTROL, "a")
    amount.send_keys("1", Keys.ENTER)
    bolder = _pixels(browser, _shown_image(browser, "edited"))
    assert bolder.shape == inferred.shape and bolder.mean() > inferred.mean() * 1.2  # more ink
    browser.save_screenshot(str(screenshots / "app-edit.png"))


def test_a_drawn_digit_is_reconstructed(server, browser, screenshots):
    url, _ = server
    _open(browser, url)
    next(tab for tab in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if tab.text == "Draw").click()
    brush = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sketch button[title='Brush']"))
    brush[0].click()
    canvas = max(browser.find_elements(By.CSS_SELECTOR, "#sketch canvas"), key=lambda c: c.size["width"])
    stroke = ActionChains(browser).move_to_element_with_offset(canvas, -40, -60).click_and_hold()
    for _ in range(10):  # a seven: the bar, then the leg
        stroke.move_by_offset(8, 0)
    for _ in range(12):
        stroke.move_by_offset(-4, 10)
    stroke.release().perform()
    browser.find_element(By.ID, "reconstruct").click()
    model_input = _pixels(browser, _shown_image(browser, "model-input"))
    inferred = _pixels(browser, _shown_image(browser, "inferred"))
    assert model_input.std() > 40 and np.abs(inferred - model_input).mean() < 15
    browser.save_screenshot(str(screenshots / "app-drawing.png"))


def test_a_bad_upload_shows_a_message(server, browser, screenshots, pictures):
    url, log_path = server
    _open(browser, url)
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(pictures["corrupt"]))
    browser.find_element(By.ID, "reconstruct").click()
    # A toast renders empty first and fills in: wait for its words.
    messages = _wait(browser, lambda d: [message for message in _toasts(d) if "Cannot read" in message])
    assert "Cannot read notes.png as a picture: upload a PNG, JPEG, BMP or WebP image." in messages[0], messages
    assert not any("Traceback" in message for message in _toasts(browser))
    browser.save_screenshot(str(screenshots / "app-bad-upload.png"))
    assert "Traceback" not in log_path.read_text()


def test_samples_are_drawn(server, browser, screenshots):
    url, _ = server
    _open(browser, url)
    browser.find_element(By.ID, "sample").click()
    grid = _pixels(browser, _shown_image(browser, "samples"))
    assert grid.shape[1] > 4 * grid.shape[0] and grid.std() > 40  # a row of 8 samples, not a blank
    samples = browser.find_element(By.ID, "samples")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", samples)
    browser.save_screenshot(str(screenshots / "app-samples.png"))


def test_screenshots_are_pictures(screenshots):
    """Runs last: every state above left a real screenshot of the page."""
    _browser_or_skip()
    names = ["app-loaded.png", "app-reconstruction.png", "app-edit.png", "app-drawing.png", "app-bad-upload.png"]
    names.append("app-samples.png")
    for name in names:
        with PIL.Image.open(screenshots / name) as shot:
            assert shot.size[0] >= 1000 and np.asarray(shot.convert("L")).std() > 5, name
