"""Plots and the Markdown report of the evaluation suite.

Plots use matplotlib's object-oriented `Figure` directly (no pyplot), so importing this module neither picks a
backend nor changes the caller's.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from diffusers_pdae.evaluation import PAPER_CRITICAL_STAGE, RECONSTRUCTION_KINDS

MODEL_LABELS = {"dpm": "DPM (unconditional)", "conditional_dpm": "class-conditional DPM", "pdae": "PDAE (shifted)"}
MODEL_COLOURS = {"dpm": "tab:blue", "conditional_dpm": "tab:orange", "pdae": "tab:green"}


def _save(figure: Figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path.name


def plot_reconstruction(figures: dict, path: Path) -> str:
    """PSNR and SSIM against the number of DDIM steps for every reconstruction kind (error bars: s.e.m.)."""
    steps = sorted(int(t) for t in figures)
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        for kind, name in RECONSTRUCTION_KINDS.items():
            means = [figures[str(t)][kind][metric]["mean"] for t in steps]
            errors = [figures[str(t)][kind][metric]["sem"] for t in steps]
            axis.errorbar(steps, means, yerr=errors, marker="o", capsize=3, label=name)
        axis.set_xscale("log")
        axis.set_xticks(steps, [str(t) for t in steps])
        axis.set_xlabel("DDIM steps T (inversion and decoding)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.suptitle("Reconstruction of test digits")
    return _save(figure, path)


def plot_probes(probes: dict, path: Path) -> str:
    """Horizontal bars of linear-probe test accuracy, labelled with each code's width."""
    names = list(probes)
    accuracies = [100 * probes[name]["test_accuracy"] for name in names]
    figure = Figure(figsize=(8, 0.45 * len(names) + 1.2))
    axis = figure.subplots()
    bars = axis.barh(range(len(names)), accuracies, color=["tab:green" if "pdae" in n else "tab:gray" for n in names])
    axis.set_yticks(range(len(names)), [f"{n} ({probes[n]['width']}-d)" for n in names])
    axis.invert_yaxis()
    for bar, accuracy in zip(bars, accuracies, strict=True):
        axis.text(bar.get_width() + 0.2, bar.get_y() + bar.get_height() / 2, f"{accuracy:.1f}", va="center")
    axis.axvline(97, color="tab:red", linestyle="--", linewidth=1, label="target 97%")
    axis.set_xlim(max(0, min(accuracies) - 10), 100.5)
    axis.set_xlabel("linear-probe test accuracy (%)")
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def plot_curves(timesteps: list[int], curves: dict[str, list[float]], ylabel: str, title: str, path: Path) -> str:
    """One log-scale curve per model against the training timestep t (left), and each curve divided by the DPM's
    (right, where differences of a few percent show)."""
    figure = Figure(figsize=(12, 4.2))
    axis, ratio_axis = figure.subplots(1, 2)
    for name, values in curves.items():
        style = {"label": MODEL_LABELS.get(name, name), "color": MODEL_COLOURS.get(name)}
        axis.plot(timesteps, values, **style)
        ratio_axis.plot(timesteps, [v / d for v, d in zip(values, curves["dpm"], strict=True)], **style)
    axis.set_yscale("log")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    ratio_axis.axhline(1.0, color="black", linewidth=0.8)
    ratio_axis.set_ylabel("ratio to the DPM")
    ratio_axis.set_title("relative to the unconditional DPM")
    for each in (axis, ratio_axis):
        each.set_xlabel("t")
        each.grid(alpha=0.3, which="both")
        each.legend(fontsize=8)
    return _save(figure, path)


def plot_critical_stage(stage: dict, path: Path) -> str:
    """Heat map of the mixed-sampling score over (t1, t2), with the shortest sufficient and the paper's stages."""
    timesteps = stage["timesteps"]
    scores = [[math.nan if s is None else s for s in row] for row in stage["scores"]]
    figure = Figure(figsize=(7.5, 6.2))
    axis = figure.subplots()
    image = axis.imshow(scores, origin="lower", cmap="viridis", vmin=0, vmax=1)
    ticks = list(range(0, len(timesteps), max(1, len(timesteps) // 10)))
    axis.set_xticks(ticks, [timesteps[i] for i in ticks], rotation=45)
    axis.set_yticks(ticks, [timesteps[i] for i in ticks])
    axis.set_xlabel("t2 (shift applied for t1 <= t <= t2)")
    axis.set_ylabel("t1")
    markers = [(stage["shortest_stage"], "tab:orange", "shortest stage >= 95% of full shift")]
    if all(t in timesteps for t in PAPER_CRITICAL_STAGE):
        markers.append((list(PAPER_CRITICAL_STAGE), "red", "paper (400, 700)"))
    for (t1, t2), colour, label in markers:
        position = ([timesteps.index(t2)], [timesteps.index(t1)])
        axis.scatter(*position, marker="s", s=90, facecolors="none", edgecolors=colour, linewidths=2, label=label)
    axis.legend(loc="upper left", fontsize=8)
    figure.colorbar(image, ax=axis, label="fraction classified as the source digit")
    axis.set_title(f"Mixed sampling ({stage['num_samples']} samples per stage)")
    return _save(figure, path)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _met(value: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[value]


def reconstruction_section(results: dict) -> list[str]:
    section = results["reconstruction"]
    rows = []
    for steps, kinds in section["figures"].items():
        for kind, name in RECONSTRUCTION_KINDS.items():
            metrics = kinds[kind]
            rows.append(
                [
                    steps,
                    name,
                    f"{metrics['mse']['mean']:.5f}",
                    f"{metrics['psnr']['mean']:.2f} ± {metrics['psnr']['sem']:.2f}",
                    f"{metrics['ssim']['mean']:.3f} ± {metrics['ssim']['sem']:.3f}",
                ]  # fmt: skip
            )
    return [
        "## Reconstruction",
        "",
        f"{section['num_digits']} test digits (a fixed, class-balanced subset of the test split, seed "
        f"{results['config']['seed']}); T DDIM steps for both the inversion and the decoding; ± is the standard error "
        "of the mean over digits. Paper (CelebA-HQ 128, T = 100): PDAE inferred x_T SSIM 0.993, z only 0.696, plain "
        "DDIM inversion 0.917.",
        "",
        markdown_table(
            ["T", f"reconstruction ({section['num_digits']} test digits)", "MSE", "PSNR (dB)", "SSIM"], rows
        ),
        "",
        f"![reconstruction vs steps]({section['plot']})",
        "",
        *[f"![reconstructions at T={t}]({name})" for t, name in section["grids"].items()],
        "",
        "Rows: originals, then each kind above (the random x_T is shared by the two random kinds).",
        "",
    ]


def representation_section(results: dict) -> list[str]:
    section = results["representation"]
    rows = [
        [
            name,
            probe["width"],
            probe["num_train"],
            probe["num_test"],
            probe["C"],
            f"{100 * probe['test_accuracy']:.2f}",
        ]
        for name, probe in section["probes"].items()
    ]
    return [
        "## Representation: linear probe",
        "",
        "Logistic regression on frozen, standardised codes, fit on the train split, scored on the test split; C "
        "picked on a held-out fifth of the train split. " + section["note"],
        "",
        markdown_table(["code", "width", "train digits", "test digits", "C", "test accuracy (%)"], rows),
        "",
        f"![linear probe]({section['plot']})",
        "",
    ]


def curves_section(results: dict) -> list[str]:
    loss, gap = results["diffusion_loss"], results["posterior_mean_gap"]
    averages = gap["average_posterior_mean_gap"]
    ordering = loss["ordering"]
    gap_rows = [[MODEL_LABELS[name], f"{value:.3e}"] for name, value in averages.items()]
    return [
        "## Figure 1: diffusion loss vs t",
        "",
        f"{loss['num_images']} test digits; the same x_t (seeded eps) for every model at each of "
        f"{len(loss['timesteps'])} timesteps (every {loss['stride']} steps, plus log-spaced ones below "
        f"{loss['stride']} and the last one); unweighted mean (eps - eps_pred)^2 over pixels and digits.",
        "",
        f"- class-conditional below unconditional at {ordering['conditional_below_dpm']} of "
        f"{ordering['conditional_checked']} timesteps (fails at t = {ordering['conditional_fails_at']})",
        f"- PDAE below both at {ordering['pdae_below_both']} of {ordering['pdae_checked']} timesteps t >= 1 (fails at "
        f"t = {ordering['pdae_fails_at']}); at t = 0 the shift coefficient c_0 is 0, so PDAE's prediction is the "
        "DPM's exactly",
        "",
        f"![diffusion loss]({loss['plot']})",
        "",
        "## Figure 5: posterior mean gap",
        "",
        "Mean squared gap per pixel between mu_theta(x_t, t) (from the model's x0_hat, unclipped) and the true "
        "posterior mean mu~(x_t, x_0), same x_t and digits as above; averages over all 1000 timesteps interpolate "
        "linearly between the measured ones.",
        "",
        markdown_table(["model", "average gap"], gap_rows),
        "",
        f"Ratio PDAE / DPM: **{gap['ratio_pdae_to_dpm']:.3f}** (target <= 0.5). The same ratio over ranges of t "
        "(averages of the interpolated curves over each range):",
        "",
        markdown_table(
            ["t range", *[f"[{low}, {high})" for low, high in gap["ranges"]]],
            [["PDAE / DPM", *[f"{ratio:.3f}" for ratio in gap["ratio_pdae_to_dpm_by_range"]]]],
        ),
        "",
        f"![posterior mean gap]({gap['plot']})",
        "",
        f"One-step predictions of x_0 (columns: t = {', '.join(map(str, gap['one_step_timesteps']))}):",
        "",
        f"![one-step x0 predictions]({gap['grid']})",
        "",
    ]


def critical_stage_section(results: dict) -> list[str]:
    stage = results["critical_stage"]
    t1, t2 = stage["shortest_stage"]
    paper = stage.get("paper_stage_score")
    autocast_note = " (networks under bfloat16 autocast)" if stage["autocast"] else ""
    lines = [
        "## Figure 3: the critical stage",
        "",
        f"{stage['num_samples']} samples per stage: z of a test digit, seeded random x_T, "
        f"{stage['num_inference_steps']} DDIM steps, the shift applied only for t1 <= t <= t2; score = fraction the "
        f"digit classifier assigns the test digit's label{autocast_note}.",
        "",
        markdown_table(
            ["stage", "score"],
            [
                ["no shift (DPM alone)", f"{stage['unconditional_score']:.3f}"],
                [f"full shift [0, {stage['timesteps'][-1]}]", f"{stage['full_shift_score']:.3f}"],
                [f"shortest stage keeping >= 95% of full: [{t1}, {t2}]", f"{stage['shortest_stage_score']:.3f}"],
                ["paper's stage [400, 700]", "n/a" if paper is None else f"{paper:.3f}"],
            ],
        ),
        "",
        f"![critical stage]({stage['plot']})",
        "",
        f"![mixed sampling]({stage['grid']})",
        "",
    ]
    return lines


def frechet_section(results: dict) -> list[str]:
    section = results["classifier_fd"]
    rows = [[name, f"{value:.3f}"] for name, value in section["distances"].items()]
    return [
        "## Classifier FD",
        "",
        "Frechet distance between Gaussian fits of the bundled digit classifier's 128-d penultimate features (not "
        f"FID: no Inception weights here), each set of {section['num_samples']} images against all "
        f"{section['num_reference']} test digits; {section['num_inference_steps']} DDIM steps. The train digits give "
        "the floor of sampling noise at this size.",
        "",
        markdown_table(["images", "classifier FD (lower is better)"], rows),
        "",
        f"z-only decodings classified as their source digit: {section['pdae_random_xT_label_accuracy']:.3f}.",
        "",
    ]


def targets_section(results: dict) -> list[str]:
    rows = [[t["name"], t["target"], t["measured"], _met(t["met"])] for t in results["targets"]]
    return ["## Targets", "", markdown_table(["target", "required", "measured", "status"], rows), ""]


def write_readme(results: dict, path: Path) -> None:
    """Write the Markdown report of `results` (the evaluation JSON, with plot file names) to `path`."""
    config = results["config"]
    lines = [
        "# PDAE on MNIST: evaluation",
        "",
        f"Generated by `{results['command']}` in {results['wall_time_s'] / 60:.1f} min on {results['device']} "
        f"({'quick mode' if config['quick'] else 'full run'}; the CPU may have been shared with other jobs, which "
        "inflates wall times). Every figure is also in `results.json`. Fit on the train split, scored on the test "
        "split; everything seeded.",
        "",
        f"Pipeline `{config['pipeline']}`, conditional DPM `{config['conditional_dpm']}`.",
        "",
        *targets_section(results),
        *reconstruction_section(results),
        *representation_section(results),
        *curves_section(results),
        *critical_stage_section(results),
        *frechet_section(results),
        "## Interpolation and manipulation",
        "",
        f"![interpolation]({results['grids']['interpolation']})",
        "",
        "Slerp on the inverted x_T, lerp on z, between pairs of test digits.",
        "",
        f"![manipulation]({results['grids']['manipulation']})",
        "",
        results["grids"]["manipulation_note"],
        "",
        "## Section wall times (s)",
        "",
        markdown_table(["section", "seconds"], [[k, f"{v:.0f}"] for k, v in results["section_times_s"].items()]),
        "",
    ]
    path.write_text("\n".join(lines))
