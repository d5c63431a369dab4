"""The adapter of diffusers' `DiTTransformer2DModel` (`DiTPipeline`'s `transformer`): a class-conditional diffusion
transformer asked with its null class, the unconditional branch of classifier-free guidance.

A DiT has no encoder or decoder half: G reads its token features instead, the hidden states after every transformer
block (`TokenFeatures`, taken with forward hooks during the one ordinary call), and the conditioning embedding of the
timestep and the null class that each block's adaLN-Zero receives. With a learned sigma (`out_channels` twice the
latent channels, as DiT-XL/2 has it) the noise prediction is the first half of the output, as `DiTPipeline` splits
it; the shift applies to that half only. With `unet_denoisers`, this is the only module that imports the frozen
models' classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DiTTransformer2DModel
from diffusers.configuration_utils import FrozenDict

from .denoiser_base import FrozenDenoiser, FrozenPass


@dataclass
class TokenFeatures:
    """What G reads from one frozen transformer pass.

    Attributes:
        conditioning (`torch.Tensor` of shape `(B, D)`): the embedding of the timestep and the null class, as the
            blocks' adaLN-Zero receive it.
        tokens (`tuple[torch.Tensor, ...]`): the hidden states after each transformer block, each `(B, N, D)` with
            `N = (H / patch_size) * (W / patch_size)` tokens.
    """

    conditioning: torch.Tensor
    tokens: tuple[torch.Tensor, ...]

    def cloned(self) -> TokenFeatures:
        return TokenFeatures(self.conditioning.clone(), tuple(tokens.clone() for tokens in self.tokens))


class DiTDenoiser(FrozenDenoiser):
    """diffusers' `DiTTransformer2DModel`, asked with the null class (`num_embeds_ada_norm`, read from its config,
    not a literal 1000), in eval mode."""

    component_name = "transformer"
    model_class = DiTTransformer2DModel
    warm_starts_attention = False
    feature_kind = "tokens"

    @classmethod
    def check_config(cls, config: dict | FrozenDict) -> None:
        if config.get("norm_type", "ada_norm_zero") != "ada_norm_zero" or config.get("num_embeds_ada_norm") is None:
            raise ValueError(
                "PDAE asks a DiTTransformer2DModel with its null class, which needs adaLN-Zero with a class table "
                f"(norm_type 'ada_norm_zero' and num_embeds_ada_norm set); got norm_type {config.get('norm_type')!r}, "
                f"num_embeds_ada_norm {config.get('num_embeds_ada_norm')!r}."
            )

    @property
    def null_class(self) -> int:
        """The label of the unconditional branch: the row after the classes in the label table."""
        return self.config.num_embeds_ada_norm

    @property
    def inner_dim(self) -> int:
        return self.config.num_attention_heads * self.config.attention_head_dim

    @property
    def num_tokens(self) -> int:
        _, height, width = self.sample_shape
        return (height // self.config.patch_size) * (width // self.config.patch_size)

    def bytes_per_sample(self) -> int:
        # Every block's tokens are kept for G, and a few maps of that size are alive inside a block.
        layers = self.config.num_layers + 8
        return layers * self.num_tokens * self.inner_dim * (torch.finfo(self.dtype).bits // 8)

    def fixed_inputs(self, batch_size: int) -> dict:
        labels = torch.full((batch_size,), self.null_class, dtype=torch.long, device=self.model.device)
        return {"class_labels": labels}

    def __call__(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            raise ValueError(
                "The frozen DiTTransformer2DModel is in train mode, where its label embedding drops labels at random; "
                "call .eval() on it (PDAE never trains it)."
            )
        output = self.model(sample, timesteps, **self.fixed_inputs(sample.shape[0])).sample
        return output[:, : sample.shape[1]]  # the noise half of a learned-sigma output

    def forward_with_features(self, sample: torch.Tensor, timesteps: torch.Tensor) -> FrozenPass:
        model = self.model
        captured: dict[str, object] = {"tokens": []}

        def keep_conditioning(module, args, output):
            captured.setdefault("conditioning", output)

        def keep_tokens(module, args, output):
            captured["tokens"].append(output)

        handles = [model.transformer_blocks[0].norm1.emb.register_forward_hook(keep_conditioning)]
        handles += [block.register_forward_hook(keep_tokens) for block in model.transformer_blocks]
        try:
            model_output = self(sample, timesteps)
        finally:
            for handle in handles:
                handle.remove()
        features = TokenFeatures(captured["conditioning"], tuple(captured["tokens"]))
        if getattr(model, "_compiled_call_impl", None) is not None:  # CUDA graphs: hand G copies (see UNetDenoiser)
            return FrozenPass(model_output.clone(), features.cloned())
        return FrozenPass(model_output, features)

    def gradient_estimator_layout(self) -> dict:
        return {
            "sample_size": self.config.sample_size,
            "patch_size": self.config.patch_size,
            "out_channels": self.config.in_channels,
            "feature_dim": self.inner_dim,
            "num_feature_layers": self.config.num_layers,
        }

    def decoder_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise ValueError(
            "A DiT has no decoder half whose weights G could start from; train G without --warm_start_from_unet."
        )
