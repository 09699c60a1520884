"""Column schemas of the Parquet results, in one place.

Each schema is a list of :class:`Column` (name, Arrow type, description). Writers build
their tables through :func:`make_table`, which enforces the exact columns and types, so
the documentation here (and in README, *Results*) is what the files hold.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # pyarrow type factory name: string, int64, float64, bool
    description: str


#: ``results/metrics/noisy/<dataset>/<noise>.parquet`` and ``results/noisy_baseline.parquet``:
#: one row per (dataset, image, noise setting), the noisy image scored against its clean one.
NOISY_METRICS = [
    Column("dataset", "string", "dataset name (Set9, Set12, CBSD68, PolyU or a user dataset)"),
    Column("image", "string", "image id"),
    Column("noise", "string", "noise id: gaussian<sigma>, poisson<zeta> or real"),
    Column("noise_kind", "string", "gaussian, poisson or real"),
    Column("noise_level", "float64", "sigma on the 0-255 scale, or zeta; null for real noise"),
    Column("seed", "int64", "seed of the noise draw; null for real noise"),
    Column("height", "int64", "image height after cropping, pixels"),
    Column("width", "int64", "image width after cropping, pixels"),
    Column("channels", "int64", "1 (grayscale) or 3 (RGB)"),
    Column("psnr", "float64", "PSNR of the noisy image vs the clean one, dB, data_range 1"),
    Column("ssim", "float64", "SSIM, data_range 1 (scikit-image defaults, mean over channels)"),
    Column("ssim_paper", "float64", "SSIM with the paper code's convention, data_range 2"),
    Column("dipkit_version", "string", "dipkit version that wrote the row"),
]


def arrow_schema(columns: list[Column]):
    """The :class:`pyarrow.Schema` of a column list."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, getattr(pa, c.type)()) for c in columns])


def make_table(rows: list[dict], columns: list[Column]):
    """Build a :class:`pyarrow.Table` with exactly ``columns``, in order.

    :raises ValueError: when a row lacks a column or has one the schema does not know.
    """
    import pyarrow as pa

    names = [c.name for c in columns]
    for i, row in enumerate(rows):
        if set(row) != set(names):
            missing, extra = set(names) - set(row), set(row) - set(names)
            raise ValueError(f"row {i}: missing columns {sorted(missing)}, unknown columns {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=arrow_schema(columns))
