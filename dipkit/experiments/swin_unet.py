"""``swin_unet`` -- paper Fig. 12: a transformer DIP with and without bilinear upsampling.

Swin-UNet (``dipkit.models`` ``swin_unet``) with its patch-expanding layers (learnt
upsampling) vs the same network whose patch expansion is replaced by 2x bilinear upsampling
(the authors' ``transformer-DIP``). Training as their code: input code ``U[0,1) * 0.2`` with
32 channels, perturbation 1/50, Adam lr 8e-4, EMA 0.99 (theirs starts the average after
iteration 100; ours from the first iteration, as every other method), 3000 iterations.

Options: ``embed_dim`` (108), ``window`` (8), ``lr`` (8e-4).
"""

from dipkit.experiments.base import COARSE, FINE, Experiment, arm, mean_curves, peak_table
from dipkit.figures import save_figure

UPSAMPLERS = {"patch_expand": "patch expanding (learnt)", "bilinear": "bilinear (fixed)"}


def make_arms(opt):
    return {
        up: arm(
            up,
            "swin_unet",
            upsample=up,
            embed_dim=int(opt["embed_dim"]),
            window=int(opt["window"]),
            in_channels=32,
            input_scale=0.2,
            reg_noise_std=1 / 50,
            lr=float(opt["lr"]),
        )
        for up in UPSAMPLERS
    }


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from dipkit.tables import write_table

    images = list(dict.fromkeys(zip(data.rows.dataset, data.rows.image)))
    curves = mean_curves(data.trajectories, ["dataset", "image", "method"])
    fig, axes = plt.subplots(
        len(images),
        1 + len(UPSAMPLERS),
        figsize=(14, 3.8 * len(images)),
        squeeze=False,
        constrained_layout=True,
    )
    for r, (dataset, image) in enumerate(images):
        ax = axes[r][0]
        for up, label in UPSAMPLERS.items():
            if (dataset, image, up) in curves:
                ax.plot(*curves[(dataset, image, up)], label=label)
        ax.set(title=f"{image}", xlabel="iteration", ylabel="PSNR (dB)")
        ax.legend(fontsize=8)
        for c, up in enumerate(UPSAMPLERS, 1):
            row = data.rows[
                (data.rows.dataset == dataset) & (data.rows.image == image) & (data.rows.method == up)
            ]
            ax = axes[r][c]
            ax.axis("off")
            if len(row):
                img = np.asarray(Image.open(row.iloc[0]["png"]))
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
                ax.set_title(f"{UPSAMPLERS[up]}: {row.iloc[0].psnr_last:.2f} dB", fontsize=9)
    fig.suptitle("Fig. 12: Swin-UNet DIP, learnt vs bilinear upsampling")
    save_figure(fig, figure)
    table = peak_table(data.rows, ["dataset", "image", "method"]).rename(columns={"method": "upsampling"})
    notes = (
        "Mean peak/last PSNR of the smoothed output. Paper Fig. 12: with bilinear upsampling the "
        "transformer denoises without the artefacts of learnt patch expansion."
    )
    write_table(table, table_csv, table_md, "swin_unet (Fig. 12)", notes, {"peak_iteration": 0})


EXPERIMENT = Experiment(
    name="swin_unet",
    figure="Fig. 12",
    description="Swin-UNet DIP with patch expanding vs bilinear upsampling",
    defaults={
        "images": [COARSE, FINE],
        "noise": ["gaussian25"],
        "iterations": 3000,
        "crop": None,
        "options": {"embed_dim": 108, "window": 8, "lr": 8e-4},
    },
    make_arms=make_arms,
    summarize=summarize,
)
