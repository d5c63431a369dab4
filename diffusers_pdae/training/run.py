"""The life of a training run around its loop, for `examples/train_dpm.py`, `train_pdae.py` and
`train_latent_sampler.py`: [`TrainingRun`] takes a script's parsed flags to its released `--output_dir` (Accelerate
set-up, the claimed folder, seeded noise, the optimisation and checkpoint state, trackers, the loop, the atomic save
of the trained pipeline and its model card), so each script holds only what it trains and the three cannot drift
apart.
"""

from __future__ import annotations

import argparse
import copy
import logging
from collections.abc import Callable

import PIL.Image
import torch
from accelerate import Accelerator
from diffusers import DiffusionPipeline, SchedulerMixin
from safetensors import SafetensorError

from ..data.sources import is_stream
from ..figures import check_finite_figures
from ..file_utils import write_folder_atomically
from .accelerator import (
    check_on_main_process,
    compile_frozen_model,
    drop_last_batch,
    make_accelerator,
    seed_run,
    weight_dtype,
)
from .args import public_flags
from .checkpointing import (
    OutputWriteError,
    check_resume,
    is_write_failure,
    register_checkpoint_hooks,
    resolve_resume_path,
    unwrap_model,
    write_checkpoint_description,
    write_run_flags,
)
from .config import TrainingConfig
from .diagnostics import RankReport
from .frozen_models import check_frozen_model, frozen_identity, write_frozen_models
from .hub import HubError, create_hub_repo, release_folder
from .loop import TrainingLoop
from .optimization import averaged_model, make_ema, make_optimization
from .output_dir import claim_output_dir, release_output_dir
from .streaming import StreamPosition, prepare_stream
from .validation import PeriodicValidation

logger = logging.getLogger(__name__)

TRACKER_VALUE_TYPES = (int, float, str, bool)


def configure_logging(accelerator: Accelerator) -> None:
    """INFO logging on the main process (warnings and errors elsewhere), and the Accelerate state, as diffusers'
    training scripts print them."""
    import datasets
    import diffusers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", force=True
    )
    main = accelerator.is_local_main_process
    logging.getLogger().setLevel(logging.INFO if main else logging.ERROR)
    datasets.utils.logging.set_verbosity_warning() if main else datasets.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_info() if main else diffusers.utils.logging.set_verbosity_error()
    logger.info(accelerator.state)


def start_hub_repo(accelerator: Accelerator, args: argparse.Namespace) -> str | None:
    """With `--push_to_hub`, create the repo now (as diffusers' scripts do), so a run that could not push stops
    before training. Returns the repo id (None without `--push_to_hub`)."""
    if not args.push_to_hub:
        return None
    repo_id = []

    def create() -> str:
        try:
            repo_id.append(create_hub_repo(args))
        except HubError as error:
            return str(error)
        return ""

    check_on_main_process(accelerator, create)
    return repo_id[0] if repo_id else None


def log_run_start(
    accelerator: Accelerator, config: TrainingConfig, schedule, num_examples: int | None, held_out: str | None = None
) -> None:
    """diffusers' "***** Running training *****" block, plus what is held out for validation (a stream, whose size is
    unknown, is said to be one)."""
    total_batch = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Num examples = {'unknown (streamed)' if num_examples is None else num_examples}")
    if held_out:
        logger.info(f"  Held out for validation = {held_out}")
    logger.info(f"  Num Epochs = {schedule.num_epochs or 'as many passes over the stream as the steps take'}")
    logger.info(f"  Instantaneous batch size per device = {config.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch}")
    logger.info(f"  Gradient Accumulation steps = {config.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {schedule.max_train_steps}")


def tracker_config(args: argparse.Namespace) -> dict:
    """The flags as trackers can record them (tensorboard's hparams take numbers, strings and booleans only), without
    secrets."""
    return {
        name: value if isinstance(value, TRACKER_VALUE_TYPES) else str(value)
        for name, value in public_flags(args).items()
        if value is not None
    }


class TrainingRun:
    """One run of a training script, from its parsed flags to its released `--output_dir`.

    Creating it starts the run on every process alike, before any model or data is loaded: the `Accelerator`, the
    logging, the claim on `--output_dir` ([`~diffusers_pdae.training.output_dir.claim_output_dir`]), the
    `--push_to_hub` repo (so a run that could not push stops before training), and the seeds. A script then builds
    what it trains and hands it over, in this order:

    ```py
    run = TrainingRun(args, "train_pdae")
    unet = run.prepare_frozen(unet, "unet")  # a frozen model: device, weight dtype, compilation
    encoder, gradient_estimator = run.prepare(
        {"encoder": encoder, "gradient_estimator": gradient_estimator}, dataset, "pdae", noise_scheduler, dpm_name
    )
    validation = run.periodic_validation(measure, "reconstructions", "8 held-out images")
    run.train(compute_loss, len(dataset), validation=validation, save_pipeline=build_pipeline)
    run.finish(build_pipeline, pdae_model_card, validation)
    ```

    `compute_loss` draws its noise with `run.noise_generator`, and `build_pipeline` takes the trained weights from
    [`final_model`].

    Attributes:
        args: the parsed flags.
        config: the shared flags, typed ([`TrainingConfig`]).
        accelerator: the run's `Accelerator`.
        noise_generator: this process's generator of training noise and timesteps (checkpointed with the run).
        repo_id: the `--push_to_hub` repo (None without it).
        models: the trained models as prepared, by checkpoint subfolder name (set by [`prepare`]).
        emas: their EMAs with `--use_ema`, as `<name>_ema`.
        optimizer: AdamW over the models' trainable parameters, prepared.
        lr_scheduler: the `--lr_scheduler` schedule, prepared.
        train_dataloader: the shuffled training data, prepared.
        stream: with a streamed dataset, this process's [`StreamPosition`] (its DataLoader and its place in it).
        schedule: the run's length ([`TrainingSchedule`]).
        loop: the [`TrainingLoop`], once [`train`] has run it.
        resume_path: the checkpoint `--resume_from_checkpoint` names (None when starting anew).
        frozen_models: what identifies each frozen model ([`prepare_frozen`]), recorded in every checkpoint.
    """

    def __init__(self, args: argparse.Namespace, project_name: str):
        """Start the run of `args` (a script's parsed flags), whose trackers log under `project_name`."""
        self.args, self.project_name = args, project_name
        self.config = TrainingConfig.from_args(args)
        self.accelerator = make_accelerator(self.config)
        configure_logging(self.accelerator)
        claim_output_dir(self.accelerator, args)
        # The flags as given, before a script derives any (--resolution from the UNet, say): what each checkpoint
        # records and what a resume is compared with, so that a resume with the same command line matches.
        self.given_flags = copy.deepcopy(public_flags(args))
        self.resume_path = resolve_resume_path(args.resume_from_checkpoint, args.output_dir)
        if self.resume_path is not None:
            check_resume(self.resume_path, self.given_flags, args.max_train_steps)
        self.frozen_models: dict[str, dict] = {}
        self.repo_id = start_hub_repo(self.accelerator, args)
        self.noise_generator = seed_run(self.accelerator, self.config.seed)
        self.models: dict[str, torch.nn.Module] = {}
        self.emas: dict = {}
        self.optimizer = self.lr_scheduler = self.train_dataloader = self.schedule = None
        self.stream: StreamPosition | None = None
        self.loop: TrainingLoop | None = None

    def prepare_frozen(self, model: torch.nn.Module, name: str) -> torch.nn.Module:
        """A model the run uses without training it (PDAE's UNet, a latent DPM's autoencoder), named `name` in each
        checkpoint's record ([`~diffusers_pdae.training.frozen_models`]; a resumed run's must match, or it stops
        before training, naming what changed), moved to the device in the weight dtype of the mixed precision and
        compiled as `accelerator.prepare` compiles the trained ones; in place."""
        self.frozen_models[name] = frozen_identity(model)
        if self.resume_path is not None:
            check_frozen_model(self.resume_path, name, self.frozen_models[name])
        model.to(self.accelerator.device)
        dtype = weight_dtype(self.accelerator)
        if any(param.dtype != dtype for param in model.parameters()):  # diffusers warns at every cast, even a no-op
            model.to(dtype=dtype)
        return compile_frozen_model(self.accelerator, model)

    def prepare(
        self,
        models: dict[str, torch.nn.Module],
        dataset: torch.utils.data.Dataset,
        pipeline_kind: str,
        scheduler: SchedulerMixin | None,
        pretrained_model_name_or_path: str | None = None,
    ) -> torch.nn.Module | tuple[torch.nn.Module, ...]:
        """Set up the training of `models` on `dataset`: the shuffled DataLoader, an EMA of each model with
        `--use_ema`, AdamW over their trainable parameters with the `--lr_scheduler` schedule, `accelerator.prepare`,
        checkpoints that hold every model, EMA and noise generator, and the trackers.

        Args:
            models: checkpoint subfolder name -> model, as built (its EMA is saved as `<name>_ema`).
            dataset: the training examples, as the models' `compute_loss` takes them in batches.
            pipeline_kind: the pipeline a checkpoint becomes in `examples/export_checkpoint.py`: "ddpm", "ldm",
                "pdae", "latent_sampler" or "autoencoder".
            scheduler: the training noise scheduler, saved in each checkpoint (None for an autoencoder).
            pretrained_model_name_or_path: the frozen DPM (PDAE), the base pipeline (latent sampler) or the frozen
                autoencoder (LDM).

        Returns:
            The prepared models, in order (the model itself when there is one), as `accelerator.prepare` returns them.
        """
        accelerator, config = self.accelerator, self.config
        self.emas = (
            {f"{name}_ema": make_ema(model, config) for name, model in models.items()} if config.use_ema else {}
        )
        parameters = [param for model in models.values() for param in model.parameters() if param.requires_grad]
        if is_stream(dataset):  # each process's own shards, not sharded again by Accelerate
            self.stream = prepare_stream(accelerator, config, dataset, self.args.dataloader_num_workers)
            loaders, num_batches = [], None
        else:
            loaders = [torch.utils.data.DataLoader(
                dataset, batch_size=config.train_batch_size, shuffle=True,
                num_workers=self.args.dataloader_num_workers,
                drop_last=drop_last_batch(accelerator, len(dataset), config.train_batch_size),
            )]  # fmt: skip
            num_batches = len(loaders[0])
        optimizer, lr_scheduler, self.schedule = make_optimization(
            config, parameters, num_batches, accelerator.num_processes
        )
        prepared = list(accelerator.prepare(*models.values(), optimizer, *loaders, lr_scheduler))
        self.lr_scheduler = prepared.pop()
        self.train_dataloader = prepared.pop() if loaders else self.stream.dataloader
        self.optimizer = prepared.pop()
        self.models = dict(zip(models, prepared, strict=True))

        def describe_checkpoint(folder: str) -> None:
            write_checkpoint_description(folder, pipeline_kind, scheduler, pretrained_model_name_or_path)
            write_run_flags(folder, self.given_flags)
            write_frozen_models(folder, self.frozen_models)

        register_checkpoint_hooks(accelerator, self.models, self.emas, self.noise_generator, describe_checkpoint)
        for ema_model in self.emas.values():
            ema_model.to(accelerator.device)
        if accelerator.is_main_process:
            accelerator.init_trackers(self.project_name, config=tracker_config(self.args))
        return prepared[0] if len(prepared) == 1 else tuple(prepared)

    def final_model(self, name: str) -> torch.nn.Module:
        """What the run releases of the model `name`: unwrapped, with its EMA weights when it has an EMA."""
        return averaged_model(unwrap_model(self.accelerator, self.models[name]), self.emas.get(f"{name}_ema"))

    def periodic_validation(
        self, measure: Callable[[int], tuple[dict, PIL.Image.Image]], image_tag: str, description: str
    ) -> PeriodicValidation:
        """A [`PeriodicValidation`] of `measure` for [`train`]: `image_tag` names its grids in tensorboard and
        `description` what it validates on, in the log."""
        return PeriodicValidation(self.accelerator, self.args, measure, image_tag, description)

    def train(
        self,
        compute_loss: Callable[[dict], torch.Tensor],
        num_examples: int | None,
        held_out: str | None = None,
        validation: PeriodicValidation | None = None,
        on_epoch_end: Callable[[int, int, bool], None] | None = None,
        save_pipeline: Callable[[], DiffusionPipeline] | None = None,
    ) -> TrainingLoop:
        """Log the run's set-up, resume from `--resume_from_checkpoint` and run the [`TrainingLoop`] to its last step.

        Args:
            compute_loss: `batch -> (B,)` per-sample loss of the prepared models.
            num_examples: how many training examples there are, for the log (None for a stream).
            held_out: what is held out for validation, for the log.
            validation: validates every `--validation_steps` steps, every `--save_images_epochs` epochs and after
                the last step.
            on_epoch_end: `(epoch, global_step, last_epoch) -> None`, after the validation of each epoch.
            save_pipeline: builds the pipeline to save every `--save_model_epochs` epochs (but the last).
        """
        epoch_hooks = [] if validation is None else [validation.on_epoch_end]
        if on_epoch_end is not None:
            epoch_hooks.append(on_epoch_end)
        every = self.args.save_model_epochs

        def end_epoch(epoch: int, global_step: int) -> None:
            last_epoch = global_step >= self.schedule.max_train_steps
            for hook in epoch_hooks:
                hook(epoch, global_step, last_epoch)
            if save_pipeline is not None and every and (epoch + 1) % every == 0 and not last_epoch:
                self.save_pipeline(save_pipeline)

        self.loop = TrainingLoop(
            self.accelerator, self.config, list(self.models.values()), self.optimizer, self.lr_scheduler,
            self.train_dataloader, compute_loss, self.schedule, ema_models=list(self.emas.values()),
            on_step_end=None if validation is None else validation.on_step_end, on_epoch_end=end_epoch,
            rank_report=RankReport() if self.args.report_ranks else None, stream=self.stream,
        )  # fmt: skip
        log_run_start(self.accelerator, self.config, self.schedule, num_examples, held_out)
        self.loop.resume()
        self.loop.run()
        if validation is not None:
            validation.finish(self.loop.global_step)
        return self.loop

    def save_pipeline(self, build_pipeline: Callable[[], DiffusionPipeline]) -> None:
        """Save the pipeline `build_pipeline` makes to `--output_dir` on the main process, once all processes are
        done, atomically ([`~diffusers_pdae.file_utils.write_folder_atomically`]: a reader never sees half a save,
        and the run's checkpoints and logs stay)."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            pipeline = build_pipeline()
            try:
                write_folder_atomically(self.args.output_dir, pipeline.save_pretrained)
            except (OSError, RuntimeError, SafetensorError) as error:
                if not is_write_failure(error):
                    raise
                raise OutputWriteError(
                    f"Could not save the pipeline to --output_dir {self.args.output_dir} ({type(error).__name__}: "
                    f"{error}); the folder keeps what it held, checkpoints included. Free space on that disk, then "
                    "rerun with --resume_from_checkpoint latest."
                ) from error
            logger.info(f"Saved {type(pipeline).__name__} to {self.args.output_dir}")

    def check_figures(self, metrics: dict | None) -> None:
        """Refuse, on every process alike, to release a run whose figures (the main process's `metrics`: the last
        validation's, the final loss) are NaN or infinite: a pipeline that makes such images is not released as if it
        worked, and the script ends with an error naming them (its checkpoints stay)."""
        checked = metrics if self.accelerator.is_main_process else None

        def check() -> str:
            try:
                check_finite_figures(
                    checked, "The run's final figures", "The trained pipeline makes non-finite outputs, so it is not "
                    f"released; the checkpoints in {self.args.output_dir} stay. Check the frozen models (a latent "
                    "DPM's scaling_factor), the data and --learning_rate.",
                )  # fmt: skip
            except ValueError as error:
                return str(error)
            return ""

        check_on_main_process(self.accelerator, check)

    def release(
        self,
        card_builder: Callable,
        metrics: dict | None = None,
        grid_source: str | None = None,
        card_image: str = "validation.png",
    ) -> None:
        """Finish the saved folder as a release (model card, `training_info.json`, `--push_to_hub`) on the main
        process, end the trackers and give the folder back. A failed upload raises [`HubError`] after everything is
        on disk.

        Args:
            card_builder: `dpm_model_card`, `pdae_model_card` or `latent_sampler_model_card`.
            metrics: figures for the card beside the final training loss (e.g. the last validation's).
            grid_source: a PNG to show in the card, copied into the folder as `card_image`.
        """
        args = self.args
        try:
            if self.accelerator.is_main_process:
                metrics = {"train_loss": self.loop.last_logs.get("loss"), **(metrics or {})}
            self.check_figures(metrics)
            if self.accelerator.is_main_process:
                summary = self.loop.summary()
                release_folder(args, card_builder, metrics, summary, grid_source, card_image, self.repo_id)
        finally:
            self.accelerator.end_training()
            if self.accelerator.is_main_process:
                release_output_dir(args.output_dir)

    def finish(
        self,
        build_pipeline: Callable[[], DiffusionPipeline],
        card_builder: Callable,
        validation: PeriodicValidation | None = None,
    ) -> None:
        """[`save_pipeline`], then [`release`] with the last validation's metrics and grid; non-finite validation
        metrics stop the run before either ([`check_figures`])."""
        self.check_figures(None if validation is None else validation.metrics)
        self.save_pipeline(build_pipeline)
        if validation is None:
            self.release(card_builder)
        else:
            self.release(card_builder, validation.metrics, validation.grid_path)
