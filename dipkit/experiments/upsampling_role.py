"""``upsampling_role`` -- paper Fig. 3: what upsampling does for denoising.

MLP-Decoder (the Deep Decoder's 1x1 convolutions) and ConvDecoder (3x3): 5 layers with
transposed convolutions, 5 with bilinear upsampling, and 5/4/3 layers without upsampling
(the input code then has the full image size). The paper's Fig. 3 scripts fit without
input perturbation and without output smoothing (``exp_weight`` 0), so the curves show the
raw output's PSNR. "N layers" counts the hidden blocks: ``layers = N + 1`` with the head.

Options: ``width`` (128), ``exp_weight`` (0.0), ``lr`` (0.01).
"""

from dipkit.experiments.base import COARSE, Experiment, arm, mean_curves, peak_table
from dipkit.figures import save_figure

DECODERS = {"mlp": ("deep_decoder", "MLP-Decoder (1x1)"), "conv": ("conv_decoder", "ConvDecoder (3x3)")}
VARIANTS = [("transposed", 5), ("bilinear", 5), ("none", 5), ("none", 4), ("none", 3)]


def make_arms(opt):
    arms = {}
    for dec, (arch, _) in DECODERS.items():
        for up, n in VARIANTS:
            name = f"{dec}_{up}_{n}"
            arms[name] = arm(
                name,
                arch,
                layers=n + 1,
                upsample=up,
                width=int(opt["width"]),
                reg_noise_std=0.0,
                exp_weight=float(opt["exp_weight"]),
                lr=float(opt["lr"]),
            )
    return arms


def _label(name):
    _, up, n = name.split("_")
    return (
        f"{n} layers "
        + {"transposed": "w. transposed conv.", "bilinear": "w. bilinear up.", "none": "w/o upsampling"}[up]
    )


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dipkit.tables import write_table

    curves = mean_curves(data.trajectories, ["method"])
    noisy = data.rows.psnr_input.mean()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (dec, (_, title)) in zip(axes, DECODERS.items()):
        ax.axhline(noisy, color="grey", ls=":", label="noisy (baseline)")
        for up, n in VARIANTS:
            name = f"{dec}_{up}_{n}"
            if name in curves:
                it, psnr = curves[name]
                ax.plot(it, psnr, label=_label(name))
        ax.set(title=title, xlabel="iteration", ylabel="PSNR (dB)")
        ax.legend(fontsize=8)
    fig.suptitle("Fig. 3: the role of upsampling (mean over images)")
    save_figure(fig, figure)
    table = peak_table(data.rows, ["method"])
    table.insert(1, "decoder", table.method.str.split("_").str[0].map(lambda d: DECODERS[d][1]))
    table.insert(2, "variant", table.method.map(_label))
    notes = (
        "PSNR of the raw output (no smoothing) vs clean: mean peak, median iteration of the peak, "
        "mean last value and the drop from peak to last (noise fitting). Paper Fig. 3: without "
        "upsampling the MLP-Decoder hardly denoises; transposed convolutions fit noise earlier "
        "than bilinear upsampling; more conv layers peak higher but fit noise sooner."
    )
    write_table(table, table_csv, table_md, "upsampling_role (Fig. 3)", notes, {"peak_iteration": 0})


EXPERIMENT = Experiment(
    name="upsampling_role",
    figure="Fig. 3",
    description="MLP-/ConvDecoder with transposed, bilinear or no upsampling",
    defaults={
        "images": [COARSE],
        "noise": ["gaussian25"],
        "iterations": 3000,
        "crop": None,
        "options": {"width": 128, "exp_weight": 0.0, "lr": 0.01},
    },
    make_arms=make_arms,
    summarize=summarize,
)
