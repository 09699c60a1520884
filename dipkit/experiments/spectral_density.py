"""``spectral_density`` -- paper Fig. 2: radially averaged power spectra of images of
different texture. No fits: the radial log-PSD of each clean image (``dipkit.features``),
with its spectral slope and released width label.

Options: none. ``images`` default: every Set9 image.
"""

from dipkit.experiments.base import Experiment
from dipkit.figures import save_figure

SET9 = [
    "Set9/image_Baboon512rgb",
    "Set9/image_F16_512rgb",
    "Set9/image_House256rgb",
    "Set9/image_Lena512rgb",
    "Set9/image_Peppers512rgb",
    "Set9/kodim01",
    "Set9/kodim02",
    "Set9/kodim03",
    "Set9/kodim12",
]


def summarize(data, cfg, figure, table_csv, table_md):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from dipkit.features import psd_frequencies, psd_slope, radial_psd
    from dipkit.methods.widths import label_width
    from dipkit.tables import write_table

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    rows = []
    freqs = psd_frequencies(64)
    for (dataset, image), img in data.images.items():
        width, source = label_width(dataset, image, fallback=0)
        label = f"{image} (label {width})" if source.startswith("labels") else image
        ax.plot(freqs, radial_psd(img, bins=64), label=label)
        rows.append(
            {
                "dataset": dataset,
                "image": image,
                "psd_slope": psd_slope(img),
                "released_width": width if source.startswith("labels") else None,
            }
        )
    ax.set(
        xscale="log",
        xlabel="frequency (cycles / pixel)",
        ylabel="log power (10 ln |F|^2)",
        title="Fig. 2: radially averaged power spectra",
    )
    ax.legend(fontsize=7)
    save_figure(fig, figure)
    table = pd.DataFrame(rows).sort_values("psd_slope").reset_index(drop=True)
    notes = (
        "`psd_slope`: exponent of power ~ f^slope over 0.02-0.25 cycles/pixel (steeper = smoother, "
        "coarser texture); `released_width`: the Texture-DIP label."
    )
    write_table(
        table.astype({"released_width": "Int64"}),
        table_csv,
        table_md,
        "spectral_density (Fig. 2)",
        notes,
        {"psd_slope": 3},
    )


EXPERIMENT = Experiment(
    name="spectral_density",
    figure="Fig. 2",
    description="radially averaged power spectra of coarse and fine images",
    defaults={"images": SET9, "noise": [], "iterations": None, "crop": None, "options": {}},
    make_arms=lambda opt: {},
    summarize=summarize,
)
