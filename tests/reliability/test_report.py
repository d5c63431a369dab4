"""docs/reliability.md is generated from this suite: it fails when the page differs from what the report writes."""

import re

from diffusers_pdae import DiffAEPipeline, PDAEPipeline

from ..conftest import REPO, load_script

AREAS = ("pipeline", "images", "loading", "training")


def test_docs_reliability_md_is_what_the_report_writes_from_this_suite():
    report = load_script("reliability_report", "scripts")
    cases, _ = report.collect()
    assert len(cases) >= 132, f"only {len(cases)} reliability cases collected; the former probe had 132"
    assert {case.area for case in cases} == set(AREAS)
    for case in cases:
        assert case.outcome in ("clear error", "handled") or case.xfail, f"{case.nodeid}: {case.outcome}, not xfail"
    doc = REPO / "docs" / "reliability.md"
    assert report.render(cases, doc.read_text()) == doc.read_text(), (
        "docs/reliability.md is out of date with tests/reliability: run `python scripts/reliability_report.py` "
        "(or `make reliability-doc`) and commit the result."
    )


# Every new flag, component or data source arrives with its bad-input and fault cases in this suite
# (docs/architecture.md, "Rules the layout keeps"). The flags below predate that rule and no case names them yet: work
# them off, never add to the list.
FLAGS_BEFORE_THE_RULE = frozenset(
    """adam_beta1 adam_beta2 adam_epsilon adam_weight_decay allow_tf32 autoencoder_type bundled_mnist cache_latents
    center_crop checkpoints_total_limit codebook_weight dataloader_num_workers dataset_config_name
    ddpm_beta_schedule ddpm_num_steps ema_inv_gamma ema_max_decay ema_power encode_batch_size
    encoder_backbone_config encoder_backbone_image_size encoder_block_out_channels encoder_layers_per_block
    encoder_norm_num_groups encoder_warm_start_from_unet freeze_encoder_backbone gradient_checkpointing
    gradient_estimator_width_multiplier hidden_dim hub_model_id hub_private_repo kl_weight label_column
    lambda_gamma latent_channels local_rank lr_scheduler max_grad_norm mixed_precision num_layers num_probe_images
    num_validation_codes num_vq_embeddings push_to_hub random_flip reconstruction_loss save_model_epochs
    scaling_factor_num_images skip_image_check split time_embed_dim use_ema validation_inference_steps
    validation_steps""".split()
)
SCRIPTS_WITH_FLAGS = (
    "train_pdae", "train_dpm", "train_latent_sampler", "train_autoencoder", "evaluate_reconstruction",
)  # fmt: skip


def suite_text() -> str:
    """The suite's cases, as text (this file, which lists flags, left out)."""
    paths = sorted((REPO / "tests" / "reliability").glob("test_*.py"))
    return "\n".join(path.read_text() for path in paths if path.name != "test_report.py")


def named_in(text: str, name: str) -> bool:
    """Whether the suite names a flag (`--name`) or a component (`"name"`, as parameters and keys are written)."""
    return re.search(rf"--{re.escape(name)}(?!\w)|[\"']{re.escape(name)}[\"']", text) is not None


def test_every_flag_and_pipeline_component_has_a_case_in_this_suite():
    text = suite_text()
    flags = {
        option[2:]
        for script in SCRIPTS_WITH_FLAGS
        for action in load_script(script).build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    without = sorted(name for name in flags - FLAGS_BEFORE_THE_RULE if not named_in(text, name))
    assert not without, (
        f"flags without a case in tests/reliability: {without}. Add their bad-input and fault cases there "
        "(@pytest.mark.reliability) and regenerate docs/reliability.md."
    )
    worked_off = sorted(name for name in FLAGS_BEFORE_THE_RULE if named_in(text, name) or name not in flags)
    assert not worked_off, f"remove {worked_off} from FLAGS_BEFORE_THE_RULE: a case names them now (or they are gone)"
    components = {*PDAEPipeline.COMPONENT_NAMES, *DiffAEPipeline.COMPONENT_NAMES}
    assert not [name for name in sorted(components) if not named_in(text, name)], "a pipeline component has no case"
