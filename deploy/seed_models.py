"""Copy the bundles baked into the serving image into an (initially empty) models directory.

    python deploy/seed_models.py SOURCE TARGET        # in the image: /app/models /models

Run by compose's one-shot `models-init` service before `api` starts (TARGET: the shared models
volume) and by the Kubernetes initContainer (TARGET: the pod's emptyDir). A bundle is a directory
holding a manifest.json. One that TARGET already has is left alone, so a bundle the trainer wrote
under the same name is never overwritten; a new one is copied under a hidden temporary name and
renamed into place, so a reader never sees half a bundle. Standard library only.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def seed(source: Path, target: Path) -> list[str]:
    """Copy every bundle of `source` that `target` lacks; returns the names copied."""
    if not source.is_dir():
        raise SystemExit(f"seed_models: {source} is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for bundle in sorted(path for path in source.iterdir() if (path / "manifest.json").is_file()):
        destination = target / bundle.name
        if destination.exists():
            continue
        partial = target / f".{bundle.name}.seeding"
        shutil.rmtree(partial, ignore_errors=True)   # left by an interrupted earlier run
        shutil.copytree(bundle, partial)
        partial.replace(destination)
        copied.append(bundle.name)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, target = map(Path, argv)
    copied = seed(source, target)
    present = sorted(path.name for path in target.iterdir() if (path / "manifest.json").is_file())
    print(f"seed_models: copied {', '.join(copied) or 'nothing'} into {target}; "
          f"bundles there: {', '.join(present) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
