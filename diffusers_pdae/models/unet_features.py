"""One frozen UNet pass that returns both eps_theta and the features the gradient estimator needs.

diffusers' `UNet2DModel.forward` returns only the noise prediction. PDAE's gradient estimator G re-uses the UNet's
time embedding and encoder half (conv_in, down blocks, mid block), so we capture those with forward hooks during
the one ordinary `unet(sample, timestep)` call: eps_theta is bit for bit what the UNet gives, and the encoder half
never runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import FrozenDict

SUPPORTED_DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
SUPPORTED_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")
SUPPORTED_MID_BLOCKS = ("UNetMidBlock2D", None)
SUPPORTED_TIME_EMBEDDINGS = ("positional", "learned")


@dataclass
class UNetFeatures:
    """What one frozen UNet pass yields.

    Attributes:
        noise_pred (`torch.Tensor` of shape `(B, C, H, W)`): eps_theta(x_t, t).
        temb (`torch.Tensor` of shape `(B, time_embed_dim)`): the UNet's time embedding (after its MLP).
        down_block_res_samples (`tuple[torch.Tensor, ...]`): the skip features of the encoder half, in the order
            `UNet2DModel` produces them (conv_in output first), each `(B, C_i, H_i, W_i)`.
        mid_block_res_sample (`torch.Tensor` of shape `(B, C_mid, H_mid, W_mid)`): output of the mid block (or of
            the last down block when the UNet has no mid block).
    """

    noise_pred: torch.Tensor
    temb: torch.Tensor
    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


def check_unet_supported(config: dict | FrozenDict) -> None:
    """Raise a `ValueError` naming the first part of a UNet2DModel config that PDAE cannot serve."""
    if config.get("time_embedding_type", "positional") not in SUPPORTED_TIME_EMBEDDINGS:
        raise ValueError(
            f"PDAE needs a UNet2DModel with time_embedding_type in {SUPPORTED_TIME_EMBEDDINGS}, got "
            f"{config['time_embedding_type']!r} (a 'fourier' UNet rescales its output by the timestep)."
        )
    if config.get("class_embed_type") is not None or config.get("num_class_embeds") is not None:
        raise ValueError(
            "PDAE turns an *unconditional* UNet2DModel into an autoencoder; this UNet has a class embedding "
            f"(class_embed_type={config.get('class_embed_type')!r}, "
            f"num_class_embeds={config.get('num_class_embeds')})."
        )
    for kind, types, supported in (
        ("down", config["down_block_types"], SUPPORTED_DOWN_BLOCKS),
        ("up", config["up_block_types"], SUPPORTED_UP_BLOCKS),
    ):
        for block_type in types:
            if block_type not in supported:
                raise ValueError(
                    f"GradientEstimator cannot serve a UNet2DModel with {kind} block {block_type!r}; "
                    f"supported {kind} blocks are {supported}."
                )
    if config.get("mid_block_type", "UNetMidBlock2D") not in SUPPORTED_MID_BLOCKS:
        raise ValueError(
            f"GradientEstimator cannot serve a UNet2DModel with mid block {config['mid_block_type']!r}; "
            f"supported: {SUPPORTED_MID_BLOCKS}."
        )


def unet_forward_with_features(unet: UNet2DModel, sample: torch.Tensor, timestep: torch.Tensor | int) -> UNetFeatures:
    """Run `unet(sample, timestep)` once and capture its time embedding and encoder-half features.

    Args:
        unet (`UNet2DModel`): the frozen, pre-trained noise predictor.
        sample (`torch.Tensor` of shape `(B, C, H, W)`): x_t.
        timestep (`torch.Tensor` of shape `(B,)` or `()`, or `int`): training timesteps.

    Returns:
        [`UNetFeatures`].
    """
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

    handles = [
        unet.time_embedding.register_forward_hook(keep_temb),
        unet.conv_in.register_forward_hook(keep_conv_in),
        *(block.register_forward_hook(keep_down) for block in unet.down_blocks),
    ]
    if unet.mid_block is not None:
        handles.append(unet.mid_block.register_forward_hook(keep_mid))
    try:
        noise_pred = unet(sample, timestep).sample
    finally:
        for handle in handles:
            handle.remove()
    features = UNetFeatures(
        noise_pred=noise_pred,
        temb=captured["temb"],
        down_block_res_samples=tuple(captured["down"]),
        mid_block_res_sample=captured["last"],
    )
    if getattr(unet, "_compiled_call_impl", None) is not None:
        # Compiled with CUDA graphs (mode="reduce-overhead"), the UNet's outputs live in the graph's memory pool and
        # the next graph replay (G's, in the same step) may overwrite them: hand G copies.
        features = UNetFeatures(
            noise_pred=features.noise_pred.clone(),
            temb=features.temb.clone(),
            down_block_res_samples=tuple(skip.clone() for skip in features.down_block_res_samples),
            mid_block_res_sample=features.mid_block_res_sample.clone(),
        )
    return features
