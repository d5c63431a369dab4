"""The adapters of diffusers' UNets: `UNet2DModel` (unconditional, as `DDPMPipeline` and `LDMPipeline` hold it) and
`UNet2DConditionModel` (Stable Diffusion's, asked with a fixed prompt's embedding, the empty prompt by default).

G reads a UNet's time embedding and encoder-half features, captured with forward hooks during the one ordinary call,
so the prediction is bit for bit the UNet's and the encoder half never runs twice. With `frozen_denoiser`, this is
the only module that imports the frozen models' classes.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel
from diffusers.configuration_utils import FrozenDict

from .denoiser_base import FrozenDenoiser, FrozenPass, UNetFeatures

SUPPORTED_DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")

SUPPORTED_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")

SUPPORTED_MID_BLOCKS = ("UNetMidBlock2D", None)

SUPPORTED_TIME_EMBEDDINGS = ("positional", "learned")


# UNet2DModel config entries a GradientEstimator copies from its UNet (and requires equal when checked against it).
UNET_LAYOUT_KEYS = (
    "sample_size",
    "out_channels",
    "block_out_channels",
    "up_block_types",
    "layers_per_block",
    "norm_num_groups",
    "resnet_time_scale_shift",
    "upsample_type",
)


class UNetDenoiser(FrozenDenoiser):
    """A diffusers UNet: G reads its time embedding and encoder-half features, captured with forward hooks during
    the one ordinary call, so the prediction is bit for bit the UNet's and the encoder half never runs twice."""

    # Take the time embedding as the blocks receive it (after any activation or added embedding), not at the MLP.
    temb_from_blocks = False

    @property
    def feature_channels(self) -> int:
        return max(self.config.in_channels, self.config.block_out_channels[0])

    def fixed_inputs(self, batch_size: int) -> dict:
        """The keyword arguments that make the model unconditional, for a batch of `batch_size`."""
        return {}

    def __call__(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.model(sample, timesteps, **self.fixed_inputs(sample.shape[0])).sample

    def forward_with_features(self, sample: torch.Tensor, timesteps: torch.Tensor) -> FrozenPass:
        unet = self.model
        captured: dict[str, object] = {"down": []}

        def keep_temb(module, args, output):
            captured["temb"] = output

        def keep_conv_in(module, args, output):
            captured["down"].append(output)
            captured["last"] = output

        def keep_down(module, args, output):
            hidden_states, res_samples = output[0], output[1]
            captured["down"].extend(res_samples)
            captured["last"] = hidden_states

        def keep_mid(module, args, output):
            captured["last"] = output

        def keep_block_temb(module, args, kwargs):
            captured["temb"] = kwargs["temb"]

        handles = [
            unet.down_blocks[0].register_forward_pre_hook(keep_block_temb, with_kwargs=True)
            if self.temb_from_blocks
            else unet.time_embedding.register_forward_hook(keep_temb),
            unet.conv_in.register_forward_hook(keep_conv_in),
            *(block.register_forward_hook(keep_down) for block in unet.down_blocks),
        ]
        if unet.mid_block is not None:
            handles.append(unet.mid_block.register_forward_hook(keep_mid))
        try:
            model_output = self(sample, timesteps)
        finally:
            for handle in handles:
                handle.remove()
        features = UNetFeatures(captured["temb"], tuple(captured["down"]), captured["last"])
        if getattr(unet, "_compiled_call_impl", None) is not None:
            # Compiled with CUDA graphs (mode="reduce-overhead"), the UNet's outputs live in the graph's memory pool
            # and the next graph replay (G's, in the same step) may overwrite them: hand G copies.
            return FrozenPass(model_output.clone(), features.cloned())
        return FrozenPass(model_output, features)

    def gradient_estimator_layout(self) -> dict:
        layout = {key: self.config[key] for key in UNET_LAYOUT_KEYS}
        layout.update(
            norm_eps=self.config.norm_eps,
            act_fn=self.config.act_fn,
            attention_head_dim=self.config.attention_head_dim,
            dropout=self.config.dropout,
            temb_channels=self.model.time_embedding.linear_2.out_features,
        )
        return layout

    def decoder_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return self.model.up_blocks.state_dict(), self.model.conv_norm_out.state_dict()


class UNet2DDenoiser(UNetDenoiser):
    """diffusers' unconditional `UNet2DModel` (`DDPMPipeline`, `DDIMPipeline`, `LDMPipeline`), asked as it is."""

    model_class = UNet2DModel

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        check_time_embedding(config, "UNet2DModel")
        if config.get("class_embed_type") is not None or config.get("num_class_embeds") is not None:
            raise ValueError(
                "PDAE turns an *unconditional* UNet2DModel into an autoencoder; this UNet has a class embedding "
                f"(class_embed_type={config.get('class_embed_type')!r}, "
                f"num_class_embeds={config.get('num_class_embeds')})."
            )
        check_block_types(config, "UNet2DModel")


def check_time_embedding(config: dict | FrozenDict, class_name: str) -> None:
    """Raise a `ValueError` for a time embedding G cannot share (a 'fourier' UNet rescales its output by t)."""
    if config.get("time_embedding_type", "positional") not in SUPPORTED_TIME_EMBEDDINGS:
        raise ValueError(
            f"PDAE needs a {class_name} with time_embedding_type in {SUPPORTED_TIME_EMBEDDINGS}, got "
            f"{config['time_embedding_type']!r} (a 'fourier' UNet rescales its output by the timestep)."
        )


def check_block_types(
    config: dict | FrozenDict,
    class_name: str,
    down_blocks: tuple[str, ...] = SUPPORTED_DOWN_BLOCKS,
    up_blocks: tuple[str, ...] = SUPPORTED_UP_BLOCKS,
    mid_blocks: tuple[str | None, ...] = SUPPORTED_MID_BLOCKS,
) -> None:
    """Raise a `ValueError` naming a down, up or mid block of a UNet config that G cannot serve."""
    for kind, types, supported in (
        ("down", config["down_block_types"], down_blocks),
        ("up", config["up_block_types"], up_blocks),
    ):
        for block_type in types:
            if block_type not in supported:
                raise ValueError(
                    f"GradientEstimator cannot serve a {class_name} with {kind} block {block_type!r}; "
                    f"supported {kind} blocks are {supported}."
                )
    if config.get("mid_block_type", mid_blocks[0]) not in mid_blocks:
        raise ValueError(
            f"GradientEstimator cannot serve a {class_name} with mid block {config['mid_block_type']!r}; "
            f"supported: {mid_blocks}."
        )


# What G's up block becomes for each of a conditional UNet's: self-attention where the UNet has cross-attention (G
# sees no text; the code z plays that part).
CONDITIONAL_UP_BLOCKS = {"CrossAttnUpBlock2D": "AttnUpBlock2D", "UpBlock2D": "UpBlock2D"}
# Config entries that make a UNet2DConditionModel need inputs besides the text embedding (SDXL's added time and text
# embeddings, class labels, LCM's guidance embedding, an image encoder's projection).
EXTRA_INPUTS = ("class_embed_type", "num_class_embeds", "addition_embed_type", "time_cond_proj_dim", "encoder_hid_dim")


class UNet2DConditionDenoiser(UNetDenoiser):
    """diffusers' `UNet2DConditionModel` (Stable Diffusion 1.x / 2.x and their fine-tunes), asked with a fixed
    prompt's embedding as `encoder_hidden_states`: the empty prompt's by default, the unconditional branch of
    classifier-free guidance. The embedding is a `PromptEmbedding` component, so neither the text encoder nor the
    tokenizer is needed to use the model."""

    model_class = UNet2DConditionModel
    takes_condition = True
    warm_starts_attention = False  # its cross-attention transformers have no counterpart in G
    temb_from_blocks = True

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        check_time_embedding(config, "UNet2DConditionModel")
        extra = [f"{key}={config[key]!r}" for key in EXTRA_INPUTS if config.get(key) is not None]
        if extra:
            raise ValueError(
                "PDAE asks a UNet2DConditionModel with a prompt's embedding alone; this one needs other inputs too "
                f"({', '.join(extra)}: e.g. SDXL's added time and text embeddings), which PDAE does not serve yet."
            )
        if not isinstance(config["layers_per_block"], int):
            raise ValueError(
                f"GradientEstimator needs one layers_per_block for every level, got {config['layers_per_block']!r}."
            )
        check_block_types(
            config,
            "UNet2DConditionModel",
            down_blocks=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_blocks=tuple(CONDITIONAL_UP_BLOCKS),
            mid_blocks=("UNetMidBlock2DCrossAttn", "UNetMidBlock2D", None),
        )

    @classmethod
    def check_condition(cls, model: ModelMixin, condition: ModelMixin | None) -> None:
        if condition is None:
            return  # an adapter for the layout alone (building G); asking the model needs it (`fixed_inputs`)
        width, expected = condition.config.embedding_dim, model.config.cross_attention_dim
        if width != expected:
            raise ValueError(
                f"The prompt embedding is {width} wide but the UNet's cross-attention takes {expected}: it comes "
                "from another text encoder than the one the UNet was trained with."
            )

    def require_condition(self) -> None:
        if self.condition is None:
            raise ValueError(
                "A UNet2DConditionModel is asked with a fixed prompt's embedding: give the pipeline a "
                "prompt_embedding (PromptEmbedding.from_prompt(text_encoder, tokenizer, prompt=''), as "
                "examples/train_pdae.py stores it)."
            )

    def fixed_inputs(self, batch_size: int) -> dict:
        self.require_condition()
        embeds = self.condition(batch_size).to(device=self.model.device, dtype=self.model.dtype)
        return {"encoder_hidden_states": embeds}

    def gradient_estimator_layout(self) -> dict:
        config = self.config
        heads = config.num_attention_heads or config.attention_head_dim  # SD's legacy name counts heads
        heads = heads if isinstance(heads, int) else heads[0]
        widths = config.block_out_channels
        head_dim = widths[0] // heads if widths[0] % heads == 0 else None
        if head_dim is not None and any(width % head_dim for width in widths):
            head_dim = None  # one head per level
        return {
            "sample_size": config.sample_size,
            "out_channels": config.out_channels,
            "block_out_channels": widths,
            "up_block_types": [CONDITIONAL_UP_BLOCKS[block] for block in config.up_block_types],
            "layers_per_block": config.layers_per_block,
            "norm_num_groups": config.norm_num_groups,
            "resnet_time_scale_shift": config.resnet_time_scale_shift,
            "upsample_type": "conv",
            "norm_eps": config.norm_eps,
            "act_fn": config.act_fn,
            "attention_head_dim": head_dim,
            "dropout": config.dropout,
            "temb_channels": self.model.time_embedding.linear_2.out_features,
        }

    def decoder_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        up_blocks, norm = super().decoder_weights()
        return {key: value for key, value in up_blocks.items() if ".attentions." not in key}, norm
