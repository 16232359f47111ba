"""AspiredVersionsManager: versions in and out without a gap in service.

Per model, a :class:`~model_server.source.FileSystemSource` lists the versions on
disk, the :class:`~model_server.version_policy.VersionPolicy` picks the aspired ones,
and the manager loads them with :class:`~model_server.loader.SavedModelLoader` in
TF Serving's availability-preserving order: a new version becomes AVAILABLE before
an old one is unloaded, and a version that fails to load is left in ``END`` with its
error while the old one keeps serving.

Request handlers ask :meth:`AspiredVersionsManager.get_servable` for a handle. The
serving map is an immutable snapshot replaced as a whole, so a handler sees either
the old or the new set of versions, never a half-loaded model, and the servable it
holds stays alive (by reference) until its request is done.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from model_server import errors
from model_server.loader import SERVE_TAG, SavedModelLoader
from model_server.servable import Servable
from model_server.source import BasePathNotFound, FileSystemSource
from model_server.version_policy import VersionPolicy

log = logging.getLogger(__name__)

# ServableState::ManagerState names, as GetModelStatus reports them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class StartupError(RuntimeError):
    """A model configured at start-up could not be loaded."""


@dataclasses.dataclass(frozen=True)
class VersionState:
    """What ServableStateMonitor knows of one version."""

    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class ServableRequest:
    """Which servable a request wants: a specific version, or the latest."""

    name: str
    version: int | None = None

    def debug_string(self) -> str:
        """As ServableRequest::DebugString: ``Latest(m)`` / ``Specific(m, 3)``."""
        if self.version is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {self.version})"


@dataclasses.dataclass
class _Model:
    name: str
    config: object  # ModelConfig
    source: FileSystemSource
    policy: VersionPolicy
    loaded: dict[int, Servable] = dataclasses.field(default_factory=dict)
    # version -> (path, mtime) of a failed load, so a replaced folder is retried.
    failed: dict[int, tuple] = dataclasses.field(default_factory=dict)


def _error_code_name(exc: BaseException) -> str:
    if isinstance(exc, errors.ServingError):
        return exc.code_name
    code = getattr(exc, "error_code", None)  # tf.errors.OpError
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return "NOT_FOUND"
    return "UNKNOWN"


def _saved_model_stamp(path: str) -> tuple:
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        try:
            st = os.stat(os.path.join(path, name))
            return (path, st.st_mtime_ns, st.st_size)
        except OSError:
            continue
    return (path, None, None)


class AspiredVersionsManager:
    """Loads, serves and unloads the versions of every configured model."""

    def __init__(
        self,
        *,
        enable_warmup: bool = True,
        warmup_iterations: int = 1,
        file_system_poll_wait_seconds: float = 1.0,
        tags=(SERVE_TAG,),
        num_load_threads: int = 0,
        max_num_load_retries: int = 0,
        load_retry_interval_s: float = 60.0,
        allow_version_labels_for_unavailable_models: bool = False,
        on_change: Callable[[], None] | None = None,
    ):
        """Args are tensorflow_model_server's flags of the same names: warm-up replay
        (each record ``warmup_iterations`` times), the MetaGraph ``tags`` to load,
        models loaded ``num_load_threads`` at a time (0: one after another), each
        failed load retried ``max_num_load_retries`` times ``load_retry_interval_s``
        apart, and whether a label may name a version not loaded (yet)."""
        self.enable_warmup = enable_warmup
        self.warmup_iterations = warmup_iterations
        self.poll_wait_seconds = file_system_poll_wait_seconds
        self.tags = tuple(tags)
        self.max_num_load_retries = max_num_load_retries
        self.load_retry_interval_s = load_retry_interval_s
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._load_pool = (ThreadPoolExecutor(num_load_threads, thread_name_prefix="load")
                           if num_load_threads > 0 else None)
        self._on_change = on_change
        self._lock = threading.RLock()
        # Guards the snapshots and each model's loaded versions when loads run in
        # parallel (--num_load_threads).
        self._publish_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        # Immutable snapshots, replaced whole (reads need no lock).
        self._serving: dict[str, dict[int, Servable]] = {}
        self._latest: dict[str, Servable] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ requests

    def get_servable(self, name: str, version: int | None = None,
                     label: str | None = None) -> Servable:
        """A handle on the servable a request names (ServerCore::GetServableHandle)."""
        if not name:
            raise errors.invalid_argument("ModelSpec has no name specified.")
        if label is not None:
            version = self._labels.get(name, {}).get(label)
            if version is None:
                raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
        if version is None:
            servable = self._latest.get(name)
        else:
            servable = self._serving.get(name, {}).get(version)
        if servable is None:
            raise errors.not_found(
                "Servable not found for request: "
                + ServableRequest(name, version).debug_string()
            )
        return servable

    def version_states(self, name: str) -> dict[int, VersionState]:
        """Every version the monitor knows of, highest first."""
        states = self._states.get(name, {})
        return {v: states[v] for v in sorted(states, reverse=True)}

    def version_labels(self, name: str) -> dict[str, int]:
        """The model's version labels (label -> version), as configured."""
        return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        """The models currently configured."""
        return sorted(self._models)

    # ------------------------------------------------------------------ config

    def model_config(self, name: str):
        """The ``ModelConfig`` a model is served with, or None when it is not configured."""
        model = self._models.get(name)
        return model.config if model is not None else None

    def apply_config(self, config, *, initial: bool = False) -> None:
        """Adds, updates and removes models to match a ModelServerConfig, then loads.

        At start-up (``initial``) any model whose versions fail to load, or whose base
        path is missing, raises :class:`StartupError` naming it.
        """
        with self._lock:
            wanted = {m.name: m for m in config.model_config_list.config}
            for name in sorted(set(self._models) - set(wanted)):
                log.info("Removing model %s", name)
                model = self._models.pop(name)
                for version in sorted(model.loaded):
                    self._unload(model, version)
            changed = []
            for name, model_config in wanted.items():
                policy = VersionPolicy.from_model_config(model_config)
                current = self._models.get(name)
                if current is None or current.config.base_path != model_config.base_path:
                    if current is not None:
                        for version in sorted(current.loaded):
                            self._unload(current, version)
                    self._models[name] = _Model(
                        name, model_config, FileSystemSource(name, model_config.base_path), policy
                    )
                else:
                    current.config = model_config
                    current.policy = policy
                changed.append(name)
            self._publish()
            problems = self._reconcile_all([self._models[name] for name in changed])
            failures = {name: problem for name, problem in zip(changed, problems) if problem}
            if initial and failures:
                name, problem = next(iter(failures.items()))
                raise StartupError(f"Error loading model {name}: {problem}")
            try:
                self._set_labels(wanted)
            except errors.ServingError as e:
                if initial:
                    raise StartupError(e.message) from None
                raise

    def _set_labels(self, wanted) -> None:
        """ServerCore::UpdateModelVersionLabelMap: a label names an available version,
        or (``allow_version_labels_for_unavailable_models``) any version unless the
        label exists already for another one."""
        labels = {}
        for name, model_config in wanted.items():
            model_labels = dict(model_config.version_labels)
            current = self._labels.get(name, {})
            for label, version in sorted(model_labels.items(), key=lambda kv: kv[1]):
                if self.allow_unavailable_labels and current.get(label, version) == version:
                    continue
                if version not in self._models[name].loaded:
                    raise errors.failed_precondition(
                        f"Request to assign label to version {version} of model {name}, "
                        "which is not currently available for inference"
                    )
            if model_labels:
                labels[name] = model_labels
        self._labels = labels

    def _reconcile_all(self, models: list[_Model]) -> list[str | None]:
        """Reconciles the models, ``num_load_threads`` at a time; their load problems."""
        if self._load_pool is None or len(models) < 2:
            return [self._reconcile(model) for model in models]
        return list(self._load_pool.map(self._reconcile, models))
    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Polls the base paths every ``file_system_poll_wait_seconds`` (if > 0)."""
        if self.poll_wait_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._poll_loop, name="file_system_poll", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stops polling and load retries (loaded versions stay until the process ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._load_pool is not None:
            self._load_pool.shutdown(wait=False, cancel_futures=True)

    def poll_once(self) -> None:
        """One scan of every base path, loading and unloading as the policies say."""
        with self._lock:
            self._reconcile_all(list(self._models.values()))

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must survive anything.
                log.exception("File system poll failed")

    def _set_state(self, name: str, version: int, state: VersionState) -> None:
        with self._publish_lock:
            states = dict(self._states.get(name, {}))
            states[version] = state
            self._states = {**self._states, name: states}

    def _publish(self, change: Callable[[], object] = lambda: None) -> None:
        """Applies ``change`` (to a model's loaded versions) and publishes new snapshots."""
        with self._publish_lock:
            change()
            serving = {name: dict(m.loaded) for name, m in self._models.items() if m.loaded}
            latest = {name: versions[max(versions)] for name, versions in serving.items()}
            self._serving, self._latest = serving, latest
        if self._on_change is not None:
            self._on_change()

    def _reconcile(self, model: _Model) -> str | None:
        """Brings one model to its aspired versions; returns a load problem, if any."""
        try:
            on_disk = model.source.scan()
        except BasePathNotFound as e:
            log.error("%s", e)
            return str(e)
        aspired = model.policy.aspired(on_disk)
        problem = None
        # Newest first, so the version that will serve "latest" is up soonest.
        for version in sorted(aspired, reverse=True):
            if version in model.loaded:
                continue
            stamp = _saved_model_stamp(on_disk[version])
            if model.failed.get(version) == stamp:
                continue
            problem = self._load(model, version, on_disk[version], stamp) or problem
        if any(v in model.loaded for v in aspired) or not aspired:
            for version in sorted(set(model.loaded) - aspired):
                self._unload(model, version)
        return problem

    def _load(self, model: _Model, version: int, path: str, stamp: tuple) -> str | None:
        self._set_state(model.name, version, VersionState(START))
        self._set_state(model.name, version, VersionState(LOADING))
        log.info("Loading servable version {name: %s version: %d} from %s",
                 model.name, version, path)
        loader = SavedModelLoader(model.name, version, path, warmup=self.enable_warmup,
                                  warmup_iterations=self.warmup_iterations, tags=self.tags)
        retry = 0
        while True:
            try:
                servable = loader.load()
                break
            except Exception as e:  # noqa: BLE001 - any failure is this version's error.
                message = f"{type(e).__name__}: {e}".strip()
                log.error("Loading servable version {name: %s version: %d} failed: %s",
                          model.name, version, message)
                # As TF Serving's Retry(): every error, max_num_load_retries more times.
                if retry < self.max_num_load_retries and not self._stop.wait(
                        self.load_retry_interval_s):
                    retry += 1
                    log.info("Retrying of Loading servable version {name: %s version: %d} "
                             "retry: %d", model.name, version, retry)
                    continue
                model.failed[version] = stamp
                self._set_state(model.name, version,
                                VersionState(END, _error_code_name(e), message))
                return message
        model.failed.pop(version, None)
        self._set_state(model.name, version, VersionState(AVAILABLE))
        self._publish(lambda: model.loaded.__setitem__(version, servable))
        log.info("Successfully loaded servable version {name: %s version: %d}",
                 model.name, version)
        return None

    def _unload(self, model: _Model, version: int) -> None:
        self._set_state(model.name, version, VersionState(UNLOADING))
        self._publish(lambda: model.loaded.pop(version, None))
        # In-flight requests keep their reference; memory goes when they finish.
        self._set_state(model.name, version, VersionState(END))
        log.info("Unloaded servable version {name: %s version: %d}", model.name, version)
