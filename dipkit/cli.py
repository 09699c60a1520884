"""The ``dipkit`` command line.

``dipkit denoise NOISY -o OUT`` runs the paper's method on one image; ``dipkit features``
regenerates the texture-feature table the width classifier is trained on.
"""

from __future__ import annotations

import argparse
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class _Progress:
    """A one-line progress bar on stderr: iterations, loss, elapsed and remaining time.

    The clock starts with the fit (``start()``), after the width prediction."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, i: int, loss: float | None) -> None:
        done = int(self.width * i / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / i * (self.total - i) if i else 0.0
        loss_text = "" if loss is None else f" loss {loss:.5f}"
        end = "\n" if i >= self.total else ""
        self.stream.write(
            f"\r[{'#' * done}{'.' * (self.width - done)}] {i}/{self.total}{loss_text} "
            f"{elapsed:.0f} s, {eta:.0f} s left{end}"
        )
        self.stream.flush()


def _check_output(args: argparse.Namespace, preview) -> str:
    """Check ``-o`` before the fit and return its Pillow format.

    The folder is created if needed and a file the size of the result (``preview``: the input
    as 8-bit ``[H, W, C]``) is written beside the output and removed, so an unknown format, a
    file where a folder should be, an unwritable folder or a full disk stop the command before
    minutes of fitting. The input itself is overwritten only with ``--force``.
    """
    import os
    import tempfile

    from PIL import Image

    out = args.output
    if out.is_dir():
        raise ValueError(f"-o {out}: a folder; give the file to write, e.g. {out / 'denoised.png'}")
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"-o {out}: unknown image format {out.suffix!r} (use .png, .tif or .jpg)")
    if out.exists() and out.samefile(args.noisy) and not args.force:
        raise ValueError(f"-o {out} is the input image; choose another name, or add --force to overwrite it")
    folder = out.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"-o {out}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(preview[:, :, 0] if preview.shape[2] == 1 else preview).save(fh, format=fmt)
        finally:
            os.unlink(probe)
    except OSError as err:
        reason = err.strerror or err
        raise ValueError(f"-o {out}: cannot write there ({reason}); nothing was fitted") from None
    return fmt


def _write_output(path, img, fmt: str) -> None:
    """Write the 8-bit ``[H, W, C]`` result atomically; if that fails after all (the disk filled
    up during the fit), keep it in the temporary folder and say where."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    from dipkit.io import atomic_path

    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt)
        return
    except OSError as err:
        parent = Path(path).parent
        reason = f"{parent} is a file, not a folder" if parent.is_file() else err.strerror or str(err)
        first = f"could not write {path} ({reason})"
    try:
        fd, spare = tempfile.mkstemp(prefix=f"dipkit-{Path(path).stem}-", suffix=Path(path).suffix)
        with open(fd, "wb") as fh:
            pil.save(fh, format=fmt)
    except OSError as err:
        raise OSError(f"{first}, nor a copy in {tempfile.gettempdir()} ({err.strerror or err})") from None
    raise OSError(f"{first}; the denoised image is saved as {spare} instead")


def _denoise(args: argparse.Namespace) -> int:
    import numpy as np

    from dipkit.denoise import method_problem
    from dipkit.images import ImageError, read_image, to_float

    problem = method_problem(args.method, args.width)
    if problem:
        raise ValueError(f"--{problem[0]} {getattr(args, problem[0])}: {problem[1]}")
    from dipkit.fit import select_device

    try:
        select_device(args.device)  # a bad --device fails now, not after the width prediction
    except ValueError as err:
        raise ValueError(f"--device {args.device}: {err}") from None
    if not args.noisy.exists():
        raise FileNotFoundError(f"{args.noisy}: no such file")
    if args.noisy.is_dir():
        raise IsADirectoryError(f"{args.noisy}: a folder, not an image")
    noisy = to_float(read_image(args.noisy))
    fmt = _check_output(args, np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8))
    try:
        return _denoise_array(args, noisy, fmt)
    except ImageError as err:
        raise ImageError(f"{args.noisy}: {err}") from None


def _denoise_array(args: argparse.Namespace, noisy, fmt: str) -> int:
    """Denoise the float ``[H, W, C]`` image and write it to ``args.output`` in PIL format ``fmt``."""
    import numpy as np

    from dipkit.denoise import denoise
    from dipkit.methods import get_method

    h, w, c = noisy.shape
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"{args.noisy}: {w}x{h}, {'RGB' if c == 3 else 'grayscale'}")
    method = get_method(args.method)
    bar = _Progress(args.iterations or method.iterations)
    if args.width is None and "width" in method.arch_options:
        say("predicting the width from texture (the first run trains and caches the classifier)")

    def progress(i, loss):
        if args.quiet:
            return
        if i <= max(1, bar.total // 100):  # first report: the fit has just begun
            bar.start()
        bar(i, loss)

    result = denoise(
        noisy,
        method=args.method,
        width=args.width,
        sigma=args.sigma,
        iterations=args.iterations,
        seed=args.seed,
        device=args.device,
        progress=progress,
        early_stop=args.early_stop,
    )
    if not args.quiet and result["iterations_run"] < bar.total:
        sys.stderr.write("\n")  # the bar stopped short of its end
    say(stop_message(result))
    say(
        f"sigma {result['sigma']:.1f} ({result['sigma_source']}), method {result['method']}"
        + (f", width {result['width']} ({result['width_source']})" if result["width"] else "")
        + f", {result['iterations_run']} iterations on {result['device']} in {result['seconds']:.1f} s"
    )
    _write_output(args.output, np.clip(np.rint(result["output"] * 255.0), 0, 255).astype(np.uint8), fmt)
    say(f"wrote {args.output}")
    return 0


def stop_message(result: dict) -> str:
    """Where and why ``dipkit denoise`` stopped, and the time that saved."""
    cap, ran, rule, rec = result["iterations"], result["iterations_run"], result["early_stop"], result["stop"]
    if rec is None:
        return f"early stopping off: ran all {cap} iterations and returned the last one's output"
    why = {
        "wmv": "the variance of the last outputs had not reached a new low for {p} iterations",
        "discrepancy": "the residual fell to the noise level (sigma {s:.1f})",
        "whiteness": "the residual had turned white at iteration {w}, the fit had caught the image",
    }[rule].format(
        p=result["fit"].settings.stop_params.wmv_patience, s=result["sigma"], w=_white_iteration(result)
    )
    if not rec.triggered:
        return (
            f"early stopping ({rule}) did not fire within the cap of {cap} iterations: returned the "
            f"last iteration's output (raise --iterations to let it run longer)"
        )
    saved = result["seconds"] * (cap - ran) / ran
    return (
        f"stopped at iteration {ran} of {cap} ({rule}: {why}, at iteration {rec.stop_iteration}); "
        f"returned the output of iteration {rec.iteration}; about {saved:.0f} s saved"
    )


def _white_iteration(result: dict) -> int | None:
    """The iteration where the residual's lag-one autocorrelation first reached 0."""
    import numpy as np

    rho = result["fit"].stop_signals.get("whiteness_rho")
    hits = np.flatnonzero(np.asarray(rho) <= 0) if rho is not None else []
    return int(hits[0]) + 1 if len(hits) else None


def _features(args: argparse.Namespace) -> int:
    from dipkit.denoise import REFERENCE_FEATURES, reference_features

    df = reference_features(args.datasets_dir, args.output or REFERENCE_FEATURES)
    print(f"{len(df)} images -> {args.output or REFERENCE_FEATURES}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pathlib import Path

    from dipkit.columns import STOP_RULES
    from dipkit.denoise import DEFAULT_EARLY_STOP, denoising_methods

    choices = (*STOP_RULES, "off")

    p = argparse.ArgumentParser(
        prog="dipkit",
        description="Deep Image Prior denoising (Liu et al., ICCV 2023). The paper's experiments run "
        "with `snakemake --cores all`; this command denoises single images.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser(
        "denoise",
        help="denoise one image with the paper's method",
        description="Denoise one image (PNG, JPEG, TIFF or BMP; grayscale or RGB; any size) with the "
        "paper's 2-level hourglass, its width predicted from the image's texture. Runs on the GPU "
        "when one is present. Example: dipkit denoise photo.png -o clean.png",
    )
    d.add_argument("noisy", type=Path, help="noisy input image")
    d.add_argument(
        "-o", "--output", type=Path, required=True, help="denoised image to write (.png, .tif, .jpg)"
    )
    d.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise standard deviation on the 0-255 scale (default: estimated from the image)",
    )
    d.add_argument(
        "--method",
        default="ours",
        help="a DIP method: ours (default), " + ", ".join(m for m in denoising_methods() if m != "ours"),
    )
    d.add_argument(
        "--width",
        type=int,
        default=None,
        help="network width, e.g. 32, 64 or 128 (default: predicted from texture)",
    )
    d.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="most Adam steps (default 3000, as the paper); the fit stops earlier when the "
        "early-stopping rule fires",
    )
    d.add_argument(
        "--early-stop",
        default=DEFAULT_EARLY_STOP,
        choices=choices,
        metavar="RULE",
        help="early-stopping rule: whiteness (of the residual) or wmv (variance of the outputs), "
        "which need no noise level, discrepancy (residual vs the noise level), or off "
        f"(default {DEFAULT_EARLY_STOP}; docs/early-stopping.md)",
    )
    d.add_argument(
        "--no-early-stop",
        dest="early_stop",
        action="store_const",
        const="off",
        help="run every iteration and return the last output (the paper's setting)",
    )
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or cuda:N")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    d.add_argument("--force", action="store_true", help="let -o overwrite the input image itself")
    d.set_defaults(func=_denoise)
    f = sub.add_parser(
        "features",
        help="regenerate the width classifier's training features (maintainers)",
        description="Compute the texture features of the labelled Set9, Set12 and CBSD68 images from a "
        "folder laid out <dir>/<dataset>/<file> and write dipkit/data/texture_features.csv.",
    )
    f.add_argument("datasets_dir", type=Path, help="folder with Set9/, Set12/ and CBSD68/")
    f.add_argument("-o", "--output", type=Path, default=None)
    f.set_defaults(func=_features)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    if getattr(args, "iterations", None) is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if getattr(args, "width", None) is not None and args.width < 1:
        parser.error(f"--width must be >= 1, got {args.width}")
    if getattr(args, "sigma", None) is not None and not 0 < args.sigma < float("inf"):
        parser.error(
            f"--sigma must be a finite number > 0 (the noise's standard deviation, 0-255 scale), "
            f"got {args.sigma}"
        )
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input (ImageError is a ValueError), unwritable files
        print(f"dipkit: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:
        if not getattr(err, "explained", False):  # out of memory: one line that says what to try
            raise
        print(f"dipkit: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ndipkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
