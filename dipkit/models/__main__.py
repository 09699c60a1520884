"""``python -m dipkit.models``: list the registered architectures with parameter counts.

Prints an aligned text table: architecture, variant (width for ``hourglass`` and
``conv_decoder_after``, upsampler for ``swin_unet``), trainable parameters for 1- and 3-channel
output, the input code shape for the chosen image size, and a one-line description.
Variants of :data:`OPTION_VARIANTS` that cannot produce the chosen size (``swin_unet`` needs
sides of 32, 64, 128 or a multiple of 256 with its default window) are left out.
"""

from __future__ import annotations

import argparse
import sys

from .registry import ARCHITECTURES, build_model, count_parameters, validate_image_size

#: architectures listed once per width
WIDTH_VARIANTS = {"hourglass": (32, 64, 128), "conv_decoder_after": (32, 64, 128)}
#: architectures listed once per option set
OPTION_VARIANTS = {"swin_unet": ({"upsample": "bilinear"}, {"upsample": "patch_expand"})}


def _fits(name: str, image_size: tuple[int, int], options: dict) -> bool:
    try:
        validate_image_size(name, image_size, **options)
    except ValueError:
        return False
    return True


def parameter_rows(image_size: tuple[int, int] = (512, 512)) -> list[dict]:
    """One dict per (architecture, variant) with keys ``name``, ``variant``, ``params_1ch``,
    ``params_3ch``, ``input_shape`` and ``description``."""
    rows = []
    for name, spec in ARCHITECTURES.items():
        variants = [{"width": w} for w in WIDTH_VARIANTS.get(name, ())] or [{}]
        if name in OPTION_VARIANTS:
            variants = [dict(v) for v in OPTION_VARIANTS[name] if _fits(name, image_size, v)]
        for opts in variants:
            counts = {}
            for c in (1, 3):
                model = build_model(name, c, image_size, **opts)
                counts[c] = count_parameters(model)
            rows.append(
                dict(
                    name=name,
                    variant=", ".join(f"{k}={v}" for k, v in opts.items()) or "default",
                    params_1ch=counts[1],
                    params_3ch=counts[3],
                    input_shape="x".join(str(v) for v in model.input_shape),
                    description=spec.description,
                )
            )
    return rows


def format_table(rows: list[dict], image_size: tuple[int, int]) -> str:
    """Render :func:`parameter_rows` as an aligned plain-text table."""
    header = [
        "architecture",
        "variant",
        "params (1 ch)",
        "params (3 ch)",
        f"input z ({image_size[0]}x{image_size[1]})",
        "description",
    ]
    body = [
        [
            r["name"],
            r["variant"],
            f"{r['params_1ch']:,}",
            f"{r['params_3ch']:,}",
            r["input_shape"],
            r["description"],
        ]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    right = {2, 3}

    def fmt(line):
        cells = [
            str(v).rjust(widths[i]) if i in right else str(v).ljust(widths[i]) for i, v in enumerate(line)
        ]
        return "  ".join(cells).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep] + [fmt(line) for line in body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dipkit.models", description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"))
    args = parser.parse_args(argv)
    size = (args.image_size[0], args.image_size[1])
    print(format_table(parameter_rows(size), size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
