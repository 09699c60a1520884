"""``lowpass_upsamplers`` -- paper Fig. 4 and Table 1: upsamplers as low-pass filters.

The 6-layer ConvDecoder of Fig. 4 (conv -> upsampler -> ReLU -> BN) with zero insertion
followed by a fixed FIR low-pass filter (the exact taps of the paper's code: NN, L14, L15,
L-60, L-100; plus our Kaiser designs L16, L17), or ``nn.Upsample`` bilinear, fitted for 5000
iterations on a coarse- and a fine-textured image. Outputs: the filters' frequency responses
computed from their taps (Fig. 4 left), PSNR curves, peak and last PSNR (Fig. 4 right) and
the iteration of the peak (Table 1). Settings of ``scripts/cd_lpf.sh``: no input
perturbation, EMA 0.99, lr 0.01.

Options: ``filters`` (names; ``bilinear`` is the built-in mode), ``width`` (128).
"""

from dipkit.experiments.base import COARSE, FINE, Experiment, arm, mean_curves, peak_table
from dipkit.figures import save_figure

FILTERS = ["NN", "bilinear", "L14", "L15", "L16", "L17", "L-60", "L-100"]

#: Fig. 4 (right) of the paper: (peak, last) PSNR on its coarse and its fine image.
PAPER_FIG4 = {
    "NN": ((31.1, 27.8), (24.5, 24.2)),
    "bilinear": ((31.3, 31.1), (22.9, 22.9)),
    "L14": ((31.4, 25.2), (24.7, 24.0)),
    "L15": ((31.2, 27.1), (24.7, 24.5)),
    "L-60": ((31.2, 31.2), (22.5, 22.5)),
    "L-100": ((27.5, 27.5), (20.0, 20.0)),
}


def make_arms(opt):
    return {
        f: arm(f, "conv_decoder_lpf", upsample=f, layers=6, width=int(opt["width"]), reg_noise_std=0.0)
        for f in opt["filters"]
    }


def stopband_db(name):
    """Largest gain over the replica band f >= 0.75 (dB); None for the built-in bilinear."""
    from dipkit.models.filters import frequency_response_db

    if name == "bilinear":
        return None
    f, db = frequency_response_db(name, num=2049)
    return float(db[f >= 0.75].max())


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dipkit.models.filters import frequency_response_db
    from dipkit.tables import write_table

    filters = list(cfg["options"]["filters"])
    colors = {name: f"C{k % 10}" for k, name in enumerate(filters)}  # same colour in every panel
    images = list(dict.fromkeys(zip(data.rows.dataset, data.rows.image)))
    fig, axes = plt.subplots(1, 1 + len(images), figsize=(5 * (1 + len(images)), 4.2))
    ax = axes[0]
    for name in filters:
        if name != "bilinear":
            f, db = frequency_response_db(name, num=1025)
            ax.plot(f, db, label=name, color=colors[name])
    ax.axvline(0.5, color="grey", ls=":")
    ax.set(
        ylim=(-120, 5),
        xlabel="frequency (1 = Nyquist of the upsampled signal)",
        ylabel="|H| (dB)",
        title="frequency responses (from the taps)",
    )
    ax.legend(fontsize=8)
    curves = mean_curves(data.trajectories, ["dataset", "image", "method"])
    for ax, (dataset, image) in zip(axes[1:], images):
        for name in filters:
            if (dataset, image, name) in curves:
                it, psnr = curves[(dataset, image, name)]
                ax.plot(it, psnr, label=name, color=colors[name])
        ax.set(title=f"{dataset}/{image}", xlabel="iteration", ylabel="PSNR (dB)")
        ax.legend(fontsize=8)
    fig.suptitle("Fig. 4: zero insertion + fixed low-pass filters on the ConvDecoder")
    save_figure(fig, figure)

    table = peak_table(data.rows, ["dataset", "image", "method"])
    table["stopband_db"] = table.method.map(stopband_db)
    order = {(d, i): k for k, (d, i) in enumerate(images)}
    table["paper_peak"] = [
        PAPER_FIG4.get(m, ((None, None),) * 2)[min(order[(d, i)], 1)][0]
        for d, i, m in zip(table.dataset, table.image, table.method)
    ]
    table["paper_last"] = [
        PAPER_FIG4.get(m, ((None, None),) * 2)[min(order[(d, i)], 1)][1]
        for d, i, m in zip(table.dataset, table.image, table.method)
    ]
    table = table.rename(columns={"method": "filter"})
    notes = (
        "Peak and last PSNR of the smoothed output (mean over fits) and the iteration of the peak "
        "(Table 1). `stopband_db`: the filter's largest gain over the image replica (f >= 0.75), "
        "from its taps. `paper_*`: Fig. 4 (right) for its coarse (first image here) and fine "
        "(second) image. L16/L17 are our Kaiser designs (not in the paper's code)."
    )
    write_table(
        table.astype({"paper_peak": float, "paper_last": float}),
        table_csv,
        table_md,
        "lowpass_upsamplers (Fig. 4, Table 1)",
        notes,
        {"peak_iteration": 0, "stopband_db": 1, "paper_peak": 1, "paper_last": 1},
    )


EXPERIMENT = Experiment(
    name="lowpass_upsamplers",
    figure="Fig. 4, Table 1",
    description="zero insertion + fixed FIR low-pass filters vs bilinear on the ConvDecoder",
    defaults={
        "images": [COARSE, FINE],
        "noise": ["gaussian25"],
        "iterations": 5000,
        "crop": None,
        "options": {"filters": FILTERS, "width": 128},
    },
    make_arms=make_arms,
    summarize=summarize,
)
