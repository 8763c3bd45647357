"""The model repository: every bundle in the models directory, served under its manifest name.

A reload builds a new {name: Served} map beside the one in use (each new or changed bundle fully
validated and warmed up first) and then swaps it in with one assignment. A request takes the map
once, so requests in flight finish on the bundles they started with. A bundle that fails to load
is rejected with its reason, and the version already served, if any, stays.

Each gunicorn worker holds its own registry. gunicorn.conf.py makes SIGHUP to the master reload
every worker in place (instead of gunicorn's default of replacing the workers, which would drop
the old bundle even when the new one is broken), and POST /admin/reload reloads the worker that
receives it, then sends SIGHUP to the master so that the others follow.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lens.bundle import MANIFEST, BundleError, read_manifest
from service import observability
from service.runtime.served import Served
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    served: Served
    directory: Path
    fingerprint: str    # sha256 of manifest.json, which holds the sha256 of every other file


@dataclass
class ReloadReport:
    loaded: list[str] = field(default_factory=list)      # new or changed, now served
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)   # {"directory", "reason"}


class Registry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()   # one reload at a time; readers never wait
        self.reloads = 0
        # Called after a reload that a client asked for, to tell the other workers (set by
        # gunicorn.conf.py; nothing to tell outside gunicorn).
        self.notify_peers: Callable[[], None] = lambda: None

    @classmethod
    def load(cls, settings: Settings) -> Registry:
        """Start-up is strict: any broken bundle, or no default model, stops the service."""
        registry = cls(settings)
        report = registry.reload()
        if report.rejected:
            first = report.rejected[0]
            raise BundleError(first["reason"])
        if settings.default_model not in registry._entries:
            raise BundleError(f"{settings.models_dir}: no bundle named {settings.default_model!r} "
                              f"(CNNLENS_DEFAULT_MODEL); found {sorted(registry._entries) or 'none'}")
        return registry

    def get(self, name: str | None) -> Served:
        """The model `name` (the default model for None); KeyError if there is none."""
        return self._entries[self.settings.default_model if name is None else name].served

    def names(self) -> list[str]:
        return sorted(self._entries)

    def all(self) -> list[Served]:
        return [entry.served for _, entry in sorted(self._entries.items())]

    def reload(self) -> ReloadReport:
        try:
            return self._reload()
        except Exception:
            observability.reloaded(None, [])
            raise

    def _reload(self) -> ReloadReport:
        with self._lock:
            report = ReloadReport()
            old = self._entries
            new: dict[str, _Entry] = {}
            for directory in _bundle_directories(self.settings.models_dir):
                try:
                    entry = self._load(directory, old)
                except BundleError as error:
                    report.rejected.append({"directory": str(directory), "reason": str(error)})
                    log.warning("model bundle rejected: %s", error)
                    continue
                name = entry.served.bundle.name
                if name in new:
                    reason = (f"{directory}: model name {name!r} is already served from "
                              f"{new[name].directory}")
                    report.rejected.append({"directory": str(directory), "reason": reason})
                    log.warning("model bundle rejected: %s", reason)
                    continue
                new[name] = entry
                unchanged = name in old and old[name].fingerprint == entry.fingerprint
                (report.unchanged if unchanged else report.loaded).append(name)
            # A model whose directory was replaced by a broken bundle keeps its old version.
            for name, entry in old.items():
                if name not in new and any(r["directory"] == str(entry.directory) for r in report.rejected):
                    new[name] = entry
            report.removed = sorted(set(old) - set(new))
            self._entries = new   # the swap
            self.reloads += 1
            log.info("models reloaded: loaded %s, unchanged %s, removed %s, rejected %d",
                     report.loaded, report.unchanged, report.removed, len(report.rejected))
            observability.reloaded(report, self.all())
            return report

    def _load(self, directory: Path, old: dict[str, _Entry]) -> _Entry:
        try:
            fingerprint = hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest()
        except OSError as error:
            raise BundleError(f"{directory / MANIFEST}: cannot be read ({error.strerror})") from None
        for entry in old.values():
            if entry.directory == directory and entry.fingerprint == fingerprint:
                return entry
        read_manifest(directory)   # cheap schema check before the sessions are built
        return _Entry(Served.load(directory, self.settings), directory, fingerprint)


def _bundle_directories(models_dir: Path) -> list[Path]:
    """Sub-directories holding a manifest, and models_dir itself if it is one bundle. Directories
    being written (`*.partial`, as training writes them) are not bundles yet."""
    if not models_dir.is_dir():
        problem = "not a directory" if models_dir.exists() else "does not exist"
        raise BundleError(f"{models_dir}: {problem} (CNNLENS_MODELS_DIR)")
    if (models_dir / MANIFEST).is_file():
        return [models_dir.resolve()]
    return sorted(path.resolve() for path in models_dir.iterdir()
                  if path.is_dir() and not path.name.endswith(".partial")
                  and not path.name.startswith(".") and (path / MANIFEST).is_file())
