"""Text conditioning in training: the captions a text-conditional DPM learns from (`train_dpm.py`), the text encoder
and tokenizer it is conditioned through, and the fixed prompt's embedding a Stable Diffusion UNet is asked with by
PDAE (`train_pdae.py --prompt`).

For a DPM made from scratch on a small caption vocabulary (the bundled `sd-mnist`), [`caption_tokenizer`] builds a
CLIP tokenizer whose byte-level BPE merges spell each caption word as one token, and [`small_text_encoder`] a
seeded, randomly initialised `CLIPTextModel` on it; the text encoder stays frozen, as Stable Diffusion's CLIP does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..models.prompt_embedding import PromptEmbedding

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
START, END = "<|startoftext|>", "<|endoftext|>"


def digit_caption(label: int) -> str:
    """The caption of an MNIST digit label: `"a handwritten digit seven"`."""
    return f"a handwritten digit {DIGIT_NAMES[int(label)]}"


def caption_words(captions: Iterable[str]) -> list[str]:
    """The distinct lower-case words of `captions`, in order of first appearance."""
    return list(dict.fromkeys(word for caption in captions for word in caption.lower().split()))


def caption_tokenizer(captions: Iterable[str], model_max_length: int = 16) -> CLIPTokenizer:
    """A CLIP tokenizer (byte-level BPE, as Stable Diffusion's) whose vocabulary is the 256 byte symbols, each with
    and without the end-of-word mark, the merges that spell every word of `captions`, and CLIP's start and end
    tokens (the end token pads, as in SD 1.x). Words outside the captions still tokenize, letter by letter.

    Raises:
        `ValueError`: if the captions hold no word, or a word that is not plain lower-case letters.
    """
    from tokenizers import pre_tokenizers

    words = caption_words(captions)
    if not words:
        raise ValueError("The captions hold no word to build a tokenizer from.")
    odd = [word for word in words if not (word.isascii() and word.isalpha())]
    if odd:
        raise ValueError(f"Caption words must be plain letters to build a tokenizer from them, got {odd[:5]}.")
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    merges = []
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair, merged = (parts[0], parts[1]), parts[0] + parts[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab:
                vocab.append(merged)
            parts = [merged, *parts[2:]]
    vocab += [START, END]
    return CLIPTokenizer(
        vocab={token: index for index, token in enumerate(vocab)}, merges=merges, model_max_length=model_max_length
    )


def small_text_encoder(
    tokenizer: CLIPTokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2, seed: int = 0
) -> CLIPTextModel:
    """A `CLIPTextModel` for `tokenizer`, randomly initialised from `seed` (its vocabulary, its sequence length)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


def load_text_encoder(name_or_path: str, flag: str) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """The frozen text encoder and tokenizer of a Stable Diffusion folder or Hub id (its `text_encoder/` and
    `tokenizer/`), or of a folder holding those two subfolders.

    Raises:
        `ValueError`: naming `flag` and what is missing.
    """
    try:
        text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer")
    except (OSError, ValueError) as error:
        where = "its text_encoder/ (safetensors weights) and tokenizer/" if os.path.isdir(name_or_path) else "the Hub"
        raise ValueError(
            f"Cannot load the text encoder and tokenizer of {flag} {name_or_path} from {where} "
            f"({type(error).__name__}: {str(error).splitlines()[0]})."
        ) from error
    text_encoder.requires_grad_(False)
    return text_encoder.eval(), tokenizer


@torch.no_grad()
def encode_captions(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, captions: Sequence[str]) -> torch.Tensor:
    """`(B, model_max_length, hidden_size)` embeddings of `captions`, as diffusers' text-to-image training encodes
    them (padded to the tokenizer's length, truncated, the last hidden state)."""
    ids = tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    return text_encoder(ids.to(text_encoder.device))[0]


def drop_captions(captions: Sequence[str], proportion: float, generator: torch.Generator) -> list[str]:
    """Each caption replaced by the empty one with probability `proportion` (drawn from `generator`), so the model
    also learns the unconditional prediction (diffusers' `--proportion_empty_prompts`)."""
    if proportion <= 0:
        return list(captions)
    dropped = torch.rand(len(captions), generator=generator) < proportion
    return ["" if drop else caption for caption, drop in zip(captions, dropped.tolist(), strict=True)]


def load_prompt_embedding(pretrained_model_name_or_path: str, prompt: str) -> PromptEmbedding:
    """The fixed prompt's embedding a Stable Diffusion folder's UNet is asked with (`train_pdae.py --prompt`),
    computed once with its text encoder, which is not kept."""
    text_encoder, tokenizer = load_text_encoder(pretrained_model_name_or_path, "--pretrained_model_name_or_path")
    return PromptEmbedding.from_prompt(text_encoder, tokenizer, prompt)


def digit_captions() -> list[str]:
    """The captions of the ten MNIST digits, in label order."""
    return [digit_caption(label) for label in range(len(DIGIT_NAMES))]


def text_encoder_for(flags: dict) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """The frozen text encoder and tokenizer a `train_dpm.py` run is conditioned through, from its flags: those of
    `--pretrained_text_encoder_name_or_path`, or (with `--digit_captions`) the small CLIP built from the digit
    captions and `--seed` (the same one again on a resume or an export)."""
    if flags.get("pretrained_text_encoder_name_or_path"):
        return load_text_encoder(
            flags["pretrained_text_encoder_name_or_path"], "--pretrained_text_encoder_name_or_path"
        )
    tokenizer = caption_tokenizer(digit_captions())
    return small_text_encoder(tokenizer, seed=flags.get("seed") or 0).requires_grad_(False), tokenizer


def dit_pipeline(transformer, vae, scheduler):
    """A `DiTPipeline` of a DiT trained on the digits' labels, its labels' names saved with it (`DiTPipeline` reads
    `id2label` at construction but does not record it: `pipe.get_label_ids("seven")` works after loading)."""
    from diffusers import DiTPipeline

    id2label = {str(label): name for label, name in enumerate(DIGIT_NAMES)}
    pipeline = DiTPipeline(transformer, vae, scheduler, id2label=id2label)
    pipeline.register_to_config(id2label=id2label)
    return pipeline
