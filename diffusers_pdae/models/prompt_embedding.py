"""`PromptEmbedding`: the fixed text embedding a text-conditional frozen UNet is asked with, stored as a component."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class PromptEmbedding(ModelMixin, ConfigMixin):
    r"""
    The embedding of one fixed prompt (the empty prompt by default), as a text-conditional UNet's
    `encoder_hidden_states`: what a Stable Diffusion UNet is asked with to be an unconditional model, the negative
    branch of classifier-free guidance. PDAE's G is trained against the UNet's prediction under this embedding, so
    the embedding belongs to the trained pipeline: it is saved with it (a few hundred kilobytes) instead of the text
    encoder and tokenizer (about 123M parameters for SD's CLIP), which are needed only to compute it once.

    Build it with [`PromptEmbedding.from_prompt`] (a text encoder and tokenizer, as `StableDiffusionPipeline` encodes
    a prompt) or [`PromptEmbedding.from_embeds`].

    Parameters:
        sequence_length (`int`, defaults to 77): tokens (the tokenizer's `model_max_length`).
        embedding_dim (`int`, defaults to 768): the text encoder's hidden size (the UNet's `cross_attention_dim`).
        prompt (`str`, defaults to `""`): the prompt it embeds, for the record.
    """

    @register_to_config
    def __init__(self, sequence_length: int = 77, embedding_dim: int = 768, prompt: str = ""):
        super().__init__()
        self.prompt_embeds = nn.Parameter(torch.zeros(1, sequence_length, embedding_dim), requires_grad=False)

    @classmethod
    def from_embeds(cls, prompt_embeds: torch.Tensor, prompt: str = "") -> PromptEmbedding:
        """From a `(1, sequence_length, embedding_dim)` embedding (e.g. `StableDiffusionPipeline.encode_prompt`'s)."""
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[0] != 1:
            raise ValueError(
                f"prompt_embeds must have shape (1, sequence_length, embedding_dim), got {tuple(prompt_embeds.shape)}."
            )
        if not torch.isfinite(prompt_embeds).all():
            raise ValueError("prompt_embeds holds NaN or infinite values; the text encoder's weights are damaged.")
        embedding = cls(sequence_length=prompt_embeds.shape[1], embedding_dim=prompt_embeds.shape[2], prompt=prompt)
        with torch.no_grad():
            embedding.prompt_embeds.copy_(prompt_embeds.float())
        return embedding if prompt_embeds.dtype == torch.float32 else embedding.to(prompt_embeds.dtype)

    @classmethod
    @torch.no_grad()
    def from_prompt(cls, text_encoder: nn.Module, tokenizer, prompt: str = "") -> PromptEmbedding:
        """The embedding of `prompt` computed exactly as `StableDiffusionPipeline.encode_prompt` computes it (padded
        to the tokenizer's `model_max_length`, truncated, the text encoder's last hidden state; the attention mask
        only where the text encoder's config asks for it)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}.")
        tokens = tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        device = next(text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
        embeds = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return cls.from_embeds(embeds.to(dtype=text_encoder.dtype).cpu(), prompt)

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        """The embedding repeated for a batch: `(batch_size, sequence_length, embedding_dim)`."""
        return self.prompt_embeds.expand(batch_size, -1, -1)
