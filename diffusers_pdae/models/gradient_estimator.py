"""PDAE's gradient estimator G_psi(x_t, z, t): the decoder half of a U-Net that also sees the code z."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.activations import get_activation
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import nn

from .frozen_denoiser import SUPPORTED_UP_BLOCKS, UNET_LAYOUT_KEYS, FrozenDenoiser, UNetFeatures, frozen_denoiser
from .gradient_estimator_blocks import GradientEstimatorUpBlock

# Scheduler config entries that define the noise schedule G was trained with; a pipeline must use the same.
# What G's training fixed about the DPM's scheduler: the noise schedule (c_t and lambda_t depend on it) and what the
# UNet predicts (eps, v or x_0), which the scheduler must keep saying.
NOISE_SCHEDULE_KEYS = (
    "num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "trained_betas", "prediction_type",
)  # fmt: skip

# Config entries a GradientEstimator shares with its frozen model's layout: `from_denoiser` copies them,
# `check_compatible` requires them equal.
UNET_KEYS_SHARED_WITH_G = UNET_LAYOUT_KEYS


@dataclass
class GradientEstimatorOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, height, width)`):
            G(x_t, z, t), an estimate of grad_{x_t} log p(z | x_t) in the UNet's image space.
    """

    sample: torch.Tensor


class GradientEstimator(ModelMixin, ConfigMixin):
    r"""
    PDAE's gradient estimator G_psi(x_t, z, t) (Zhang, Zhao & Lin 2022, section 3.2).

    G is the decoder half of a U-Net shaped like the pre-trained UNet's up blocks. It does not contain the frozen
    UNet: it receives the UNet's time embedding and encoder-half features (a [`UNetFeatures`], from
    [`~diffusers_pdae.models.frozen_denoiser.FrozenDenoiser.forward_with_features`]) and the code z, which enters
    every resnet block through a learned scale and shift. The output convolution is zero-initialised, so G = 0 at
    the start and the shifted prediction eps_theta - c_t G equals eps_theta. Build it with
    [`GradientEstimator.from_denoiser`] (or `from_unet`, the same).

    Parameters:
        latent_dim (`int`, defaults to 64): width of the code z.
        sample_size (`int`, *optional*): the UNet's image size (checked against the UNet, not used to build G).
        out_channels (`int`, defaults to 3): image channels of G's output (the UNet's `out_channels`).
        block_out_channels (`tuple[int]`): the UNet's `block_out_channels`.
        up_block_types (`tuple[str]`): the UNet's up blocks, `"UpBlock2D"` or `"AttnUpBlock2D"`.
        layers_per_block (`int`, defaults to 2): the UNet's `layers_per_block` (each up block has one more).
        temb_channels (`int`, *optional*): width of the UNet's time embedding (defaults to
            `4 * block_out_channels[0]`, as in `UNet2DModel`).
        z_embed_dim (`int`, *optional*): width of the shared code embedding (defaults to `temb_channels`).
        norm_num_groups (`int`, defaults to 32): as in the UNet.
        norm_eps (`float`, defaults to 1e-5): as in the UNet.
        act_fn (`str`, defaults to `"silu"`): as in the UNet.
        attention_head_dim (`int`, *optional*): as in the UNet.
        resnet_time_scale_shift (`str`, defaults to `"default"`): as in the UNet.
        upsample_type (`str`, defaults to `"conv"`): as in the UNet.
        dropout (`float`, defaults to 0.0): as in the UNet.
        resnets_per_up_block (`int`, *optional*): resnets in each of G's up blocks, at most `layers_per_block + 1`
            (the default, as in the UNet). Fewer make a lighter G: resnet i takes the UNet's i-th skip from the end
            of its level, and the level's earliest skips go unused.
        up_block_out_channels (`tuple[int]`, *optional*): G's own widths, in the order of `block_out_channels`
            (defaults to the UNet's). Narrower widths make a lighter G; G still reads the UNet's skips at their
            widths. Each must be divisible by `norm_num_groups` (and, at attention levels, `attention_head_dim`).
        train_noise_schedule (`dict`, *optional*): the noise schedule G was trained with (the scheduler config's
            `num_train_timesteps`, `beta_schedule`, `beta_start`, `beta_end`, `trained_betas`, and the UNet's
            `prediction_type`); c_t and lambda_t depend on it, so a pipeline with another schedule or prediction type
            is refused. Recorded by `from_unet(...,
            noise_scheduler=...)`; None (older checkpoints) skips the check.
        unet_weights_digest (`str`, *optional*): sha256 of the weights of the UNet G serves, written when a
            `PDAEPipeline` is saved; loading a folder whose `unet/` has other weights is refused. None skips it.
        autoencoder_weights_digest (`str`, *optional*): the same for a latent DPM's autoencoder (the pipeline's
            `vae`), written at every save (None for a pixel DPM); a folder whose `vae/` has other weights, or that
            lists no `vae`, is refused. None (older folders) skips it.
        autoencoder_scaling_factor (`float`, *optional*): the autoencoder's `scaling_factor` the latents were scaled
            by, written with the digest; a `vae` with another one is refused.

    Gradient checkpointing (`enable_gradient_checkpointing()`, diffusers' runtime setting, not saved in the config)
    recomputes each resnet, attention and upsampler of the up blocks, and the output head, in the backward pass
    instead of keeping their activations; the loss and the gradients are unchanged.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        sample_size: int | None = None,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = (64, 128, 256),
        up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block: int = 2,
        temb_channels: int | None = None,
        z_embed_dim: int | None = None,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        resnet_time_scale_shift: str = "default",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        train_noise_schedule: dict | None = None,
        resnets_per_up_block: int | None = None,
        up_block_out_channels: tuple[int, ...] | None = None,
        unet_weights_digest: str | None = None,
        autoencoder_weights_digest: str | None = None,
        autoencoder_scaling_factor: float | None = None,
    ):
        super().__init__()
        if len(block_out_channels) != len(up_block_types):
            raise ValueError(
                f"block_out_channels {tuple(block_out_channels)} and up_block_types {tuple(up_block_types)} must have "
                "the same length (one up block per resolution)."
            )
        for block_type in up_block_types:
            if block_type not in SUPPORTED_UP_BLOCKS:
                raise ValueError(f"Unsupported up block {block_type!r}; supported: {SUPPORTED_UP_BLOCKS}.")
        temb_channels = temb_channels or 4 * block_out_channels[0]
        z_embed_dim = z_embed_dim or temb_channels
        resnets_per_up_block = resnets_per_up_block or layers_per_block + 1
        up_block_out_channels = tuple(up_block_out_channels or block_out_channels)
        _check_light_layout(
            block_out_channels,
            up_block_types,
            layers_per_block,
            norm_num_groups,
            attention_head_dim,
            resnets_per_up_block,
            up_block_out_channels,
        )

        self.z_embedding = nn.Linear(latent_dim, z_embed_dim)

        skip_channels = list(reversed(block_out_channels))
        widths = list(reversed(up_block_out_channels))
        output_channel = skip_channels[0]  # the first block starts from the UNet's mid-block output
        self.up_blocks = nn.ModuleList()
        for i, block_type in enumerate(up_block_types):
            prev_output_channel, output_channel = output_channel, widths[i]
            self.up_blocks.append(
                GradientEstimatorUpBlock(
                    in_channels=skip_channels[min(i + 1, len(block_out_channels) - 1)],
                    prev_output_channel=prev_output_channel,
                    out_channels=output_channel,
                    skip_channels=skip_channels[i],
                    num_skips=layers_per_block + 1,
                    temb_channels=temb_channels,
                    z_channels=z_embed_dim,
                    num_layers=resnets_per_up_block,
                    add_attention=block_type == "AttnUpBlock2D",
                    add_upsample=i < len(block_out_channels) - 1,
                    # As in diffusers' get_up_block: upsample_type is for AttnUpBlock2D only; UpBlock2D uses a conv.
                    upsample_type=upsample_type if block_type == "AttnUpBlock2D" else "conv",
                    resnet_eps=norm_eps,
                    resnet_groups=norm_num_groups,
                    resnet_act_fn=act_fn,
                    resnet_time_scale_shift=resnet_time_scale_shift,
                    attention_head_dim=attention_head_dim or output_channel,
                    dropout=dropout,
                )
            )

        self.conv_norm_out = nn.GroupNorm(num_channels=widths[-1], num_groups=norm_num_groups, eps=norm_eps)
        self.conv_act = get_activation(act_fn)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.gradient_checkpointing = False  # the output head's; each up block has its own

    @classmethod
    def from_denoiser(
        cls,
        denoiser: FrozenDenoiser | ModelMixin,
        latent_dim: int = 64,
        warm_start: bool = False,
        noise_scheduler: SchedulerMixin | None = None,
        width_multiplier: float = 1.0,
        **kwargs,
    ) -> GradientEstimator:
        """Build a gradient estimator shaped like the frozen model's decoder half.

        Args:
            denoiser ([`FrozenDenoiser`] or the frozen model itself): the pre-trained denoiser G will serve.
            latent_dim (`int`, defaults to 64): width of the code z.
            warm_start (`bool`, defaults to `False`): initialise the up blocks and output norm from `unet`'s (the
                code projections stay freshly initialised and the output conv stays zero, so G = 0 still).
            noise_scheduler (`SchedulerMixin`, *optional*): the DPM's training scheduler, recorded as
                `train_noise_schedule` so pipelines with another schedule are refused.
            width_multiplier (`float`, defaults to 1.0): G's widths as a fraction of the UNet's, each rounded to a
                multiple of `norm_num_groups` (sets `up_block_out_channels`; not with `warm_start`).
            kwargs (`dict[str, Any]`, *optional*): overrides of other config entries (e.g. `z_embed_dim`,
                `dropout`).

        Raises:
            `ValueError`: if the model has a class, block type or embedding PDAE cannot serve (the message names it).
        """
        denoiser = reads_unet_features(frozen_denoiser(denoiser))
        config = denoiser.gradient_estimator_layout()
        if noise_scheduler is not None:
            config["train_noise_schedule"] = noise_schedule_of(noise_scheduler)
        if width_multiplier != 1.0:
            config["up_block_out_channels"] = scaled_widths(
                config["block_out_channels"], width_multiplier, config["norm_num_groups"]
            )
        config.update(kwargs)
        estimator = cls(latent_dim=latent_dim, **config)
        if warm_start:
            estimator.warm_start_from(denoiser)
        return estimator

    from_unet = from_denoiser  # the name of earlier releases

    def warm_start_from(self, denoiser: FrozenDenoiser | ModelMixin) -> None:
        """Copy the frozen UNet's up-block and output-norm weights into G and make every parameter of G trainable.

        A G with fewer resnets per up block takes the UNet's first ones of each level; a G of other widths cannot be
        warm-started.
        """
        denoiser = frozen_denoiser(denoiser)
        widths = tuple(self.config.up_block_out_channels or self.config.block_out_channels)
        if widths != tuple(denoiser.config.block_out_channels):
            raise ValueError(
                f"G's widths {widths} differ from the UNet's {tuple(denoiser.config.block_out_channels)}, so its up "
                "blocks cannot be copied; train it without warm start (or keep the UNet's widths)."
            )
        unet_weights, norm_weights = denoiser.decoder_weights()
        own_keys = set(self.up_blocks.state_dict())
        missing, unexpected = self.up_blocks.load_state_dict(
            {key: value for key, value in unet_weights.items() if key in own_keys}, strict=False
        )
        left_out = [key for key in unet_weights if key not in own_keys]
        fresh = ("z_proj",) if denoiser.warm_starts_attention else ("z_proj", "attentions")  # G's own, not copied
        not_fresh = [key for key in missing if not _in_layer(key, fresh)]
        if unexpected or not_fresh or not all(map(_is_dropped_layer, left_out)):
            raise ValueError(
                f"The UNet's up blocks do not match this GradientEstimator (missing {missing[:3]}, not copied "
                f"{left_out[:3]}); build it with GradientEstimator.from_unet(unet)."
            )
        self.conv_norm_out.load_state_dict(norm_weights)
        # Weights copied from a frozen UNet keep requires_grad=False in some flows; G must train.
        self.requires_grad_(True)

    def check_compatible(self, denoiser: FrozenDenoiser | ModelMixin) -> None:
        """Raise a `ValueError` if this estimator was not built for the frozen model's layout."""
        layout = reads_unet_features(frozen_denoiser(denoiser)).gradient_estimator_layout()
        mismatches = [
            f"{key}: UNet {layout[key]!r} vs gradient_estimator {self.config[key]!r}"
            for key in (*UNET_KEYS_SHARED_WITH_G, "temb_channels")
            if _normalised(layout[key]) != _normalised(self.config[key])
        ]
        if mismatches:
            raise ValueError(
                "The gradient estimator does not fit the UNet (" + "; ".join(mismatches) + "). Build a matching one "
                "with GradientEstimator.from_unet(unet, latent_dim=...) and train it on this UNet."
            )

    def check_schedule(self, scheduler: SchedulerMixin) -> None:
        """Raise a `ValueError` naming both schedules if `scheduler` is not the noise schedule G was trained with."""
        check_schedule_against(self.config.get("train_noise_schedule"), scheduler)

    def forward(
        self, features: UNetFeatures, z: torch.Tensor, return_dict: bool = True
    ) -> GradientEstimatorOutput | tuple:
        r"""
        Args:
            features ([`UNetFeatures`]): what the frozen UNet's pass over x_t yields for G: its time embedding
                `(B, temb_channels)`, its encoder-half skip features (conv_in output first) and its mid-block output.
            z (`torch.Tensor` of shape `(B, latent_dim)`): codes from the encoder.
            return_dict (`bool`, defaults to `True`): return a [`GradientEstimatorOutput`] instead of a tuple.

        Returns:
            [`GradientEstimatorOutput`] with `sample` of shape `(B, out_channels, H, W)`, or `(sample,)`.
        """
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"z must have shape (batch_size, {self.config.latent_dim}), got {tuple(z.shape)}; it should come from "
                "the PDAEEncoder trained with this gradient estimator."
            )
        zemb = self.z_embedding(z.to(self.dtype))
        temb = features.temb.to(self.dtype)
        # Attention outputs of the UNet come back channels-last strided; torch 2.13's CPU GroupNorm backward
        # crashes on such inputs, so hand G contiguous tensors.
        hidden_states = features.mid_block_res_sample.to(self.dtype).contiguous()
        skips = [skip.to(self.dtype).contiguous() for skip in features.down_block_res_samples]
        skips_per_block = self.config.layers_per_block + 1
        for block in self.up_blocks:
            block_skips, skips = skips[-skips_per_block:], skips[:-skips_per_block]
            hidden_states = block(hidden_states, block_skips, temb, zemb)
        if skips:
            raise ValueError(
                f"{len(skips)} encoder feature maps were left unused: the features do not come from a UNet with this "
                "gradient estimator's layout."
            )
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            # The head's norm and activation outputs are two full-resolution maps of G's last width: recompute them.
            head = nn.Sequential(self.conv_norm_out, self.conv_act, self.conv_out)  # not registered: same weights
            sample = self._gradient_checkpointing_func(head, hidden_states)
        else:
            sample = self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))
        if not return_dict:
            return (sample,)
        return GradientEstimatorOutput(sample=sample)


def _check_light_layout(
    block_out_channels: tuple[int, ...],
    up_block_types: tuple[str, ...],
    layers_per_block: int,
    norm_num_groups: int,
    attention_head_dim: int | None,
    resnets_per_up_block: int,
    up_block_out_channels: tuple[int, ...],
) -> None:
    """Raise a `ValueError` naming a lighter-G setting that cannot be built for this UNet layout."""
    if not 1 <= resnets_per_up_block <= layers_per_block + 1:
        raise ValueError(
            f"resnets_per_up_block must be between 1 and layers_per_block + 1 = {layers_per_block + 1} (one per skip "
            f"of the UNet's level), got {resnets_per_up_block}."
        )
    if len(up_block_out_channels) != len(block_out_channels):
        raise ValueError(
            f"up_block_out_channels {tuple(up_block_out_channels)} needs one width per level of block_out_channels "
            f"{tuple(block_out_channels)}."
        )
    for width, block_type in zip(reversed(up_block_out_channels), up_block_types, strict=True):
        head_dim = attention_head_dim or width
        needs_heads = block_type == "AttnUpBlock2D"
        if width % norm_num_groups or (needs_heads and width % head_dim):
            raise ValueError(
                f"G's width {width} must be divisible by norm_num_groups {norm_num_groups}"
                + (f" and by attention_head_dim {head_dim}" if needs_heads else "")
                + f"; got up_block_out_channels {tuple(up_block_out_channels)}."
            )


def scaled_widths(block_out_channels: tuple[int, ...], multiplier: float, multiple: int) -> tuple[int, ...]:
    """`block_out_channels` times `multiplier`, each rounded to the nearest positive multiple of `multiple`."""
    if not multiplier > 0:
        raise ValueError(f"The width multiplier must be positive, got {multiplier}.")
    return tuple(max(multiple, multiple * round(width * multiplier / multiple)) for width in block_out_channels)


def _in_layer(key: str, layers: tuple[str, ...]) -> bool:
    return any(f".{layer}." in key for layer in layers)


def _is_dropped_layer(key: str) -> bool:
    """Whether an up-block weight of the UNet belongs to a resnet or attention that a lighter G leaves out."""
    return ".resnets." in key or ".attentions." in key


def reads_unet_features(denoiser: FrozenDenoiser) -> FrozenDenoiser:
    """`denoiser`, if G can be its UNet's decoder half; a `ValueError` naming the G to use otherwise."""
    if denoiser.feature_kind != "unet":
        raise ValueError(
            f"A GradientEstimator is a UNet's decoder half; the frozen {type(denoiser.model).__name__} has none. Use "
            "TransformerGradientEstimator.from_denoiser (or gradient_estimator_for, which picks the design)."
        )
    return denoiser


def check_schedule_against(trained: dict | None, scheduler: SchedulerMixin) -> None:
    """Raise a `ValueError` naming both schedules if `scheduler`'s noise schedule is not `trained` (a G's recorded
    `train_noise_schedule`; None, as in older checkpoints, skips the check)."""
    if trained is None:
        return
    used = noise_schedule_of(scheduler)
    # Checkpoints saved before prediction_type was recorded lack it: compare what was recorded.
    recorded = [key for key in NOISE_SCHEDULE_KEYS if key in trained]
    if any(_normalised(trained[key]) != _normalised(used.get(key)) for key in recorded):
        raise ValueError(
            f"The scheduler's noise schedule {used} is not the one the gradient estimator was trained with "
            f"{dict(trained)}; c_t and the loss weights depend on it. Build the scheduler from the training "
            "schedule (e.g. DDIMScheduler.from_config(pipe.scheduler.config)) and change only its sampling "
            "settings."
        )


def noise_schedule_of(scheduler: SchedulerMixin) -> dict:
    """The entries of a scheduler's config that define its noise schedule (`NOISE_SCHEDULE_KEYS`)."""
    return {key: _normalised(scheduler.config.get(key)) for key in NOISE_SCHEDULE_KEYS}


def _normalised(value):
    return list(value) if isinstance(value, (list, tuple)) else value
