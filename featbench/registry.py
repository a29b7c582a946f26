"""Name → object registries for extractors, datasets, classifiers and tasks.

Built-in entries register themselves with a decorator when their module is
imported; the registry imports the built-in modules on first lookup. Third-party
packages add entries through the entry-point groups ``featbench.extractors``,
``featbench.datasets``, ``featbench.classifiers`` and ``featbench.tasks``; an entry point may point at
a class or function (registered under the entry point's name) or at a module
whose decorators register what it holds. A plugin that fails to import is listed
as unavailable with its reason and breaks nothing else.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from featbench.errors import ConfigError, UnknownNameError

T = TypeVar("T")

__all__ = [
    "Registry",
    "EXTRACTORS",
    "DATASETS",
    "CLASSIFIERS",
    "TASKS",
    "register_extractor",
    "register_task",
    "list_tasks",
    "register_dataset",
    "register_classifier",
    "create_extractor",
    "get_extractor",
    "list_extractors",
    "list_datasets",
    "list_classifiers",
    "load_plugin",
    "plugin_paths",
]


@dataclass(frozen=True)
class Unavailable:
    """A plugin that could not be loaded, and why."""

    name: str
    source: str
    reason: str


class Registry:
    """A named collection of objects of one kind.

    Parameters
    ----------
    kind : str
        Singular noun used in messages ("extractor").
    group : str
        Entry-point group scanned on first lookup.
    builtins : list of str
        Modules imported on first lookup; their decorators register built-ins.
    check : callable, optional
        ``check(obj)`` returns why ``obj`` cannot be an entry of this kind, or None; an entry point
        naming such an object is listed as unavailable instead of breaking ``featbench list``.
    """

    def __init__(self, kind: str, group: str, builtins: list[str],
                 check: Callable[[Any], str | None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, Any] = {}
        self._unavailable: dict[str, Unavailable] = {}
        self._loaded = False

    # -- registration -------------------------------------------------------
    def register(self, name: str | None = None, *, obj: Any = None, replace: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""

        def decorator(target: T) -> T:
            problem = self._check(target) if self._check is not None else None
            if problem:
                raise ConfigError(f"cannot register {self.kind} {name or '?'!r}: {problem}")
            if getattr(target, "__module__", None) not in self._builtins:
                self._ensure_loaded()  # a plugin's name is checked against the built-ins, whatever came first
            key = name or getattr(target, "name", None) or target.__name__
            existing = self._entries.get(key)
            if existing is not None and existing is not target and not replace:
                raise ConfigError(
                    f"{self.kind} name {key!r} is already registered by {_qualname(existing)}; "
                    f"{_qualname(target)}{_origin(target)} cannot take it: choose another name or pass replace=True"
                )
            self._entries[key] = target
            self._unavailable.pop(key, None)
            return target

        return decorator(obj) if obj is not None else decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests)."""
        self._entries.pop(name, None)

    # -- loading ------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtins:
            importlib.import_module(module)
        self.load_entry_points()

    def load_entry_points(self) -> None:
        """Scan the entry-point group (again) and register what it names."""
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            source = f"entry point {ep.name} = {ep.value}"
            try:
                target = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin (even one calling sys.exit) breaks nothing else
                self._unavailable[ep.name] = Unavailable(ep.name, source, _reason(exc))
                continue
            if not isinstance(target, type(sys)):  # a module registers itself
                problem = self._check(target) if self._check is not None else None
                if problem:
                    self._unavailable[ep.name] = Unavailable(ep.name, source, problem)
                    continue
                self.register(ep.name, obj=target, replace=True)
            elif ep.name not in self._entries:
                self._unavailable[ep.name] = Unavailable(
                    ep.name, source, f"module {ep.value} registered no {self.kind} named {ep.name!r}"
                )

    # -- lookup ---------------------------------------------------------------
    def get(self, name: str) -> Any:
        """Return the entry registered as ``name``.

        Raises
        ------
        UnknownNameError
            With close matches, or the plugin's import error if it is unavailable.
        """
        self._ensure_loaded()
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {name!r}")
        if name in self._entries:
            return self._entries[name]
        if name in self._unavailable:
            u = self._unavailable[name]
            raise UnknownNameError(f"{self.kind} {name!r} is unavailable: {u.reason} ({u.source})")
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; {hint}known {self.kind}s: {', '.join(known)}"
        )

    def list(self, pattern: str = "*") -> list[str]:
        """Names of available entries matching the fnmatch ``pattern``, sorted."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def unavailable(self) -> dict[str, Unavailable]:
        """Plugins that failed to load, by name."""
        self._ensure_loaded()
        return dict(self._unavailable)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) on import"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_extractor_class(obj: Any) -> str | None:
    # Duck-typed: the registry imports no extractor code.
    if not isinstance(obj, type) or not hasattr(obj, "spec") or not callable(getattr(obj, "transform", None)):
        return f"{obj!r} is not an extractor class (a subclass of featbench.extractors.Extractor)"
    return None


def _is_dataset_loader(obj: Any) -> str | None:
    if not callable(obj):
        return f"{obj!r} is not a dataset loader (a function returning an ImageSet)"
    return None


def _is_classifier_class(obj: Any) -> str | None:
    if not isinstance(obj, type) or not callable(getattr(obj, "pipeline", None)):
        return f"{obj!r} is not a classifier class (a subclass of featbench.classifiers.Classifier)"
    return None


def _is_task_class(obj: Any) -> str | None:
    if not isinstance(obj, type) or not callable(getattr(obj, "run", None)) or not hasattr(obj, "cells"):
        return f"{obj!r} is not a task class (a subclass of featbench.tasks.Task)"
    return None


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _origin(obj: Any) -> str:
    """`` (in <file>)`` for an object defined in a file, else nothing."""
    path = getattr(sys.modules.get(getattr(obj, "__module__", None) or ""), "__file__", None)
    return f" (in {path})" if path else ""


EXTRACTORS = Registry(
    "extractor",
    "featbench.extractors",
    [
        "featbench.extractors.pixels",
        "featbench.extractors.hog",
        "featbench.extractors.keypoints",
        "featbench.extractors.haar",
        "featbench.extractors.lbp",
        "featbench.extractors.deep",
        "featbench.extractors.cnn",
        "featbench.extractors.texture",
        "featbench.extractors.color",
        "featbench.extractors.moments",
        "featbench.extractors.pca",
        "featbench.extractors.union",
    ],
    check=_is_extractor_class,
)
DATASETS = Registry("dataset", "featbench.datasets", ["featbench.datasets.builtin"], check=_is_dataset_loader)
CLASSIFIERS = Registry("classifier", "featbench.classifiers", ["featbench.classifiers"],
                       check=_is_classifier_class)
TASKS = Registry("task", "featbench.tasks", ["featbench.tasks.classification", "featbench.tasks.retrieval",
                                             "featbench.tasks.diagnostics", "featbench.tasks.learning_curve",
                                             "featbench.tasks.robustness"],
                 check=_is_task_class)


def register_extractor(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Class decorator: register an :class:`~featbench.extractors.Extractor` subclass.

    Examples
    --------
    >>> from featbench import register_extractor
    >>> from featbench.extractors import Extractor
    >>> @register_extractor("my-mean")
    ... class Mean(Extractor):
    ...     def _transform_one(self, image):
    ...         return [image.mean()]
    """
    return EXTRACTORS.register(name, replace=replace)


def register_dataset(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Decorator: register a function returning an :class:`~featbench.datasets.ImageSet`."""
    return DATASETS.register(name, replace=replace)


def register_classifier(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Decorator: register a :class:`~featbench.classifiers.Classifier` subclass."""
    return CLASSIFIERS.register(name, replace=replace)


def register_task(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Class decorator: register a :class:`~featbench.tasks.Task` subclass (its ``name`` is set to ``name``)."""
    def decorator(cls: T) -> T:
        if name is not None and isinstance(cls, type):
            cls.name = name  # type: ignore[attr-defined]
        return TASKS.register(name, replace=replace)(cls)

    return decorator


def get_extractor(name: str) -> type:
    """The extractor class registered as ``name``."""
    return EXTRACTORS.get(name)


def create_extractor(name: str, **params: Any):
    """Instantiate the extractor registered as ``name`` with ``params``.

    Unknown parameter names are a :class:`~featbench.errors.ConfigError` that lists
    the accepted ones.
    """
    cls = EXTRACTORS.get(name)
    accepted = cls._get_param_names()
    wrong = [k for k in params if k not in accepted]
    if wrong:
        close = difflib.get_close_matches(wrong[0], accepted, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown parameter {', '.join(map(repr, wrong))} for extractor {name!r}; {hint}"
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**params)


def list_extractors(pattern: str = "*") -> list[str]:
    """Registered extractor names matching ``pattern`` (fnmatch)."""
    return EXTRACTORS.list(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching ``pattern`` (fnmatch)."""
    return DATASETS.list(pattern)


def list_classifiers(pattern: str = "*") -> list[str]:
    """Registered classifier names matching ``pattern`` (fnmatch)."""
    return CLASSIFIERS.list(pattern)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching ``pattern`` (fnmatch)."""
    return TASKS.list(pattern)


def _pickle_by_value(module) -> None:
    """A plugin file is no importable module in a worker process (loky, dask): what it defines is sent to
    workers by value (cloudpickle), as functions defined in ``__main__`` are."""
    for name in ("joblib.externals.cloudpickle", "cloudpickle"):
        try:
            importlib.import_module(name).register_pickle_by_value(module)
        except (ImportError, AttributeError, ValueError):
            pass


def plugin_paths(plugins: Sequence[str], base: Path | None) -> tuple[str, ...]:
    """The experiment's plugins with file paths made absolute, for :func:`load_plugin` in a worker."""
    out = []
    for spec in plugins:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            path = Path(spec)
            out.append(str((base / path if base is not None and not path.is_absolute() else path).resolve()))
        else:
            out.append(spec)
    return tuple(out)


def load_plugin(spec: str, base: Path | None = None) -> None:
    """Import a user plugin: a ``.py`` file (relative to ``base``) or a module name.

    Its decorators register what it defines.
    """
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ConfigError(
                f"plugin file {str(path)!r} not found; plugins are paths to .py files "
                "(relative to the experiment file) or importable module names"
            )
        mod_name = f"featbench_plugin_{path.stem}_{abs(hash(str(path.resolve()))):x}"
        if mod_name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            del sys.modules[mod_name]
            raise ConfigError(f"plugin file {str(path)!r} failed to import: {_reason(exc)}") from exc
        _pickle_by_value(module)
    else:
        try:
            importlib.import_module(spec)
        except (Exception, SystemExit) as exc:
            raise ConfigError(f"plugin module {spec!r} cannot be imported: {_reason(exc)}") from exc
