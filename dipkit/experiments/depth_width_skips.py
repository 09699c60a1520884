"""``depth_width_skips`` -- paper Fig. 5 and Fig. 10: depth x width x skip connections.

The hourglass of the paper's method (ReLU, zero padding, bilinear upsampling, input
channels = width) at depth (levels) 1-6, width 32/64/128/256, without skip connections or
with a 4-channel skip at every level, fitted at sigma 25 and 50 on a coarse and a fine
image. Outputs: heatmaps of the last-iteration SSIM (depth x width) per image, noise level
and skip setting, and curves of SSIM against width per depth: width matters for shallow
networks and hardly for deep ones (Fig. 10a).

Options: ``depths``, ``widths``, ``skips`` (list of booleans).
"""

from dipkit.experiments.base import COARSE, FINE, Experiment, arm
from dipkit.figures import save_figure


def arm_name(depth, width, skip):
    return f"d{depth}_w{width}_{'skip' if skip else 'noskip'}"


def make_arms(opt):
    arms = {}
    for d in opt["depths"]:
        for w in opt["widths"]:
            for s in opt["skips"]:
                arms[arm_name(d, w, s)] = arm(
                    arm_name(d, w, s),
                    "hourglass",
                    levels=int(d),
                    width=int(w),
                    num_skips=int(d) if s else 0,
                    skip_channels=4,
                )
    return arms


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dipkit.tables import write_table

    opt = cfg["options"]
    rows = data.rows.copy()
    parts = rows.method.str.extract(r"d(\d+)_w(\d+)_(skip|noskip)")
    rows["depth"], rows["width_"], rows["skips"] = (
        parts[0].astype(int),
        parts[1].astype(int),
        parts[2] == "skip",
    )
    groups = list(dict.fromkeys(zip(rows.dataset, rows.image, rows.noise)))
    ncols = len(opt["skips"]) + 1
    fig, axes = plt.subplots(
        len(groups), ncols, figsize=(5.0 * ncols, 3.8 * len(groups)), squeeze=False, constrained_layout=True
    )
    depths, widths = sorted(opt["depths"]), sorted(opt["widths"])
    for r, (dataset, image, noise) in enumerate(groups):
        g = rows[(rows.dataset == dataset) & (rows.image == image) & (rows.noise == noise)]
        vmin, vmax = g.ssim_last.min(), g.ssim_last.max()  # one colour scale per row
        for c, skip in enumerate(opt["skips"]):
            ax = axes[r][c]
            grid = np.full((len(depths), len(widths)), np.nan)
            for _, x in g[g.skips == bool(skip)].iterrows():
                grid[depths.index(x.depth), widths.index(x.width_)] = x.ssim_last
            im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
            ax.set(
                xticks=range(len(widths)),
                xticklabels=widths,
                yticks=range(len(depths)),
                yticklabels=depths,
                xlabel="width",
                ylabel="depth",
                title=f"{'skips' if skip else 'no skips'}",
            )
            if c == 0:
                ax.set_ylabel(f"{image}, {noise}\ndepth", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, label="SSIM")
        ax = axes[r][-1]
        for d in depths:
            x = g[(g.depth == d) & (~g.skips)].sort_values("width_")
            if len(x):
                ax.plot(x.width_, x.ssim_last, marker="o", label=f"depth {d}")
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set(
            xticks=widths,
            xticklabels=widths,
            xlabel="width",
            ylabel="SSIM (last)",
            title="no skips: SSIM vs width",
        )
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 5 / Fig. 10: depth x width x skip connections (last-iteration SSIM)")
    save_figure(fig, figure)
    table = rows[
        [
            "dataset",
            "image",
            "noise",
            "depth",
            "width_",
            "skips",
            "params",
            "psnr_last",
            "ssim_last",
            "psnr_peak",
            "psnr_peak_iteration",
        ]
    ].rename(columns={"width_": "width"})
    table = table.sort_values(["dataset", "image", "noise", "skips", "depth", "width"]).reset_index(drop=True)
    notes = (
        "One row per fit. Paper Fig. 5: for shallow networks a larger width over-fits coarse images and "
        "helps fine ones; deeper networks attenuate more and the width matters less (Fig. 10a)."
    )
    write_table(
        table,
        table_csv,
        table_md,
        "depth_width_skips (Fig. 5, Fig. 10)",
        notes,
        {"psnr_last": 2, "ssim_last": 4, "psnr_peak": 2},
    )


EXPERIMENT = Experiment(
    name="depth_width_skips",
    figure="Fig. 5, Fig. 10",
    description="hourglass depth 1-6 x width 32-256 x skip connections, sigma 25 and 50",
    defaults={
        "images": [COARSE, FINE],
        "noise": ["gaussian25", "gaussian50"],
        "iterations": 3000,
        "crop": None,
        "options": {"depths": [1, 2, 3, 4, 5, 6], "widths": [32, 64, 128, 256], "skips": [False, True]},
    },
    make_arms=make_arms,
    summarize=summarize,
)
