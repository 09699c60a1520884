"""``upsampling_position`` -- paper Fig. 6: where the upsampling sits, and how large it is.

A 6-layer ConvDecoder (``conv_decoder_position``) with a single bilinear upsampler placed
next to the input or next to the output, with factors 2 to 32 (the input code is the image
size / factor): the same number of layers, one larger upsampling step. The paper: close to
the input the network over-fits whatever the factor; close to the output large factors
over-smooth. The paper's exact networks are not in its code [UNVERIFIED]; settings as the
ConvDecoder of Table 2 (no input perturbation, EMA 0.99).

Options: ``positions`` (first/last), ``factors``, ``width`` (128).
"""

from dipkit.experiments.base import COARSE, FINE, Experiment, arm, mean_curves, peak_table
from dipkit.figures import save_figure


def make_arms(opt):
    return {
        f"{pos}_x{f}": arm(
            f"{pos}_x{f}",
            "conv_decoder_position",
            position=pos,
            factor=int(f),
            width=int(opt["width"]),
            reg_noise_std=0.0,
        )
        for pos in opt["positions"]
        for f in opt["factors"]
    }


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dipkit.tables import write_table

    opt = cfg["options"]
    images = list(dict.fromkeys(zip(data.rows.dataset, data.rows.image)))
    curves = mean_curves(data.trajectories, ["dataset", "image", "method"])
    fig, axes = plt.subplots(
        len(images),
        len(opt["positions"]),
        figsize=(5.5 * len(opt["positions"]), 3.8 * len(images)),
        squeeze=False,
        constrained_layout=True,
    )
    for r, (dataset, image) in enumerate(images):
        for c, pos in enumerate(opt["positions"]):
            ax = axes[r][c]
            for k, f in enumerate(opt["factors"]):
                key = (dataset, image, f"{pos}_x{f}")
                if key in curves:
                    ax.plot(*curves[key], label=f"x{f}", color=f"C{k}")
            ax.set(
                title=f"{image}: upsampling next to the {'input' if pos == 'first' else 'output'}",
                xlabel="iteration",
                ylabel="PSNR (dB)",
            )
            ax.legend(fontsize=8)
    fig.suptitle("Fig. 6: position and factor of the upsampling")
    save_figure(fig, figure)
    table = peak_table(data.rows, ["dataset", "image", "method"])
    parts = table.method.str.extract(r"(first|last)_x(\d+)")
    table.insert(3, "position", parts[0].map({"first": "input", "last": "output"}))
    table.insert(4, "factor", parts[1].astype(int))
    notes = (
        "Mean peak/last PSNR of the smoothed output, median iteration of the peak, and the drop from "
        "peak to last (noise fitting). Paper Fig. 6: next to the input -> over-fitting at any factor; next "
        "to the output -> large factors over-smooth (low peak, no drop)."
    )
    write_table(table, table_csv, table_md, "upsampling_position (Fig. 6)", notes, {"peak_iteration": 0})


EXPERIMENT = Experiment(
    name="upsampling_position",
    figure="Fig. 6",
    description="one upsampler next to the input or the output, factors 2-32",
    defaults={
        "images": [COARSE, FINE],
        "noise": ["gaussian25"],
        "iterations": 3000,
        "crop": None,
        "options": {"positions": ["first", "last"], "factors": [2, 4, 8, 16, 32], "width": 128},
    },
    make_arms=make_arms,
    summarize=summarize,
)
