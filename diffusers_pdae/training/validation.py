"""When a training script validates, and what each validation leaves: logged metrics, a grid on disk and in
tensorboard, and the last metrics and grid for the model card."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import PIL.Image
from accelerate import Accelerator

logger = logging.getLogger(__name__)


class PeriodicValidation:
    """Runs `measure(global_step) -> (metrics, grid)` on the main process every `--validation_steps` steps, every
    `--save_images_epochs` epochs and after the last step, at most once per step.

    Each run saves the grid to `output_dir/validation/step-<step>.png` and to tensorboard under `image_tag`;
    `metrics` and `grid_path` hold the latest run's, for the model card.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        args,
        measure: Callable[[int], tuple[dict, PIL.Image.Image]],
        image_tag: str,
        description: str,
    ):
        self.accelerator, self.args, self.measure = accelerator, args, measure
        self.image_tag, self.description = image_tag, description
        self.step: int | None = None
        self.metrics: dict | None = None
        self.grid_path: str | None = None

    def run(self, global_step: int) -> dict:
        """Validate now (unless this step already was) and return the metrics."""
        if self.step == global_step:  # the step and epoch hooks can both ask at the last step
            return self.metrics
        logger.info(f"Validation at step {global_step} on {self.description}")
        metrics, grid = self.measure(global_step)
        self.grid_path = os.path.join(self.args.output_dir, "validation", f"step-{global_step:06d}.png")
        os.makedirs(os.path.dirname(self.grid_path), exist_ok=True)
        grid.save(self.grid_path)
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image(self.image_tag, np.asarray(grid), global_step, dataformats="HWC")
        self.step, self.metrics = global_step, metrics
        return metrics

    def on_step_end(self, global_step: int) -> dict | None:
        """The loop's `on_step_end`: metrics to log every `--validation_steps` steps."""
        every = self.args.validation_steps
        if every and global_step % every == 0 and self.accelerator.is_main_process:
            return self.run(global_step)
        return None

    def on_epoch_end(self, epoch: int, global_step: int, last_epoch: bool) -> None:
        """Validate and log every `--save_images_epochs` epochs and after the last one."""
        if self.accelerator.is_main_process and (last_epoch or (epoch + 1) % self.args.save_images_epochs == 0):
            self.accelerator.log(self.run(global_step), step=global_step)

    def finish(self, global_step: int) -> None:
        """Make sure the card's metrics and grid come from the final weights."""
        if self.accelerator.is_main_process:
            self.run(global_step)
