"""Cuts Beam's per-transform and per-bundle overhead, most of a small job's fixed cost.

A tf.Transform job applies about a thousand transforms (some 450 of them ``ParDo``s)
and runs about a hundred bundles (one per fused stage), and Beam repeats work for each:

- ``PipelineOptions.view_as(cls)`` builds a fresh argparse parser for ``cls`` and
  parses every flag again; the pipeline asks for a view on each transform it applies
  and on each type check. :class:`ParsedOnceOptions` keeps one view per class (views
  share the options' values, so one view behaves as a new one would).
- Beam looks for a ``DoFn``'s state and timer specs by inspecting the signature of
  every method of the ``DoFn``, five times per ``ParDo`` while the pipeline is built
  and twice more per bundle processor. :func:`memoize_dofn_specs` remembers the
  answer per ``DoFn`` class.
- On each ``ParDo``, Beam reads the source of its ``DoFn``'s ``process`` method
  (``inspect.getsourcelines``, which tokenizes the method's file) to warn about a
  method that both yields and returns: 525 times a job, for 29 methods.
  :func:`memoize_yield_and_return_check` remembers the answer per method's code.
- Beam asks ``inspect.signature`` about the same functions some 15,000 times per job
  (each ``DoFn`` method, each ``Map`` callable, when built, type-checked and unpickled
  into a bundle processor). :func:`memoize_signatures` remembers each function's.
- The in-process worker weighs every side input it reads (a deep ``objsize`` walk)
  for a 100 MB state cache that the local runner, which runs each stage as one
  bundle per worker, hardly ever hits. :func:`embedded_worker_without_state_cache` turns it off.
- Each bundle processor of an in-process worker starts two threads: one that samples
  how long each step runs (the bundle waits, at its end, for that thread's next
  wake-up) and one that builds the processor while the bundle's thread waits for it.
  :func:`in_process_bundles_without_threads` does without both, about 4 ms a bundle.
- Beam pickles each ``DoFn`` (and each side input's view function) into the pipeline
  proto, and each in-process bundle processor unpickles its stage's ``DoFn``s and
  pickles each again with its windowing; every pickle is bz2-compressed at level 9
  (about a quarter of a millisecond each, whatever its size, for ~1,500 pickles of a
  few KiB), and 6 in 10 of them are bytes that were compressed before.
  :func:`pickles_compressed_once` remembers the compressed bytes of each small pickle.
- Pickling a function by value (a lambda, a local function: tf.Transform's ``Map``s),
  cloudpickle looks through every imported module (over 5,000 with TensorFlow) for
  submodules of each package the function refers to, each time it pickles it (2,000
  times a job, for 50 functions). :func:`memoize_submodule_search` remembers the answer
  while the imported modules stay the same.
- Each in-process bundle processor unpickles each step's ``DoFn`` data, adds the
  step's windowing and pickles it all again for the step to unpickle:
  :func:`dofns_unpickled_with_windowing` hands the windowing over beside the payload.
- The job builds and drops millions of objects among the millions that importing
  TensorFlow and Beam left behind, and each of Python's full garbage collections
  walks them all (about 0.35 s each, twice per small job).
  :func:`older_objects_left_out_of_collection` leaves those out while the job runs.

On a 1,000-row job the first two took about 3.5 s and 3 s of a 13 s job; the next two
about 0.9 s of 10 s; the threads and the collections about 0.4 s and 0.5 s of 5.5 s;
the repeated compressions about 0.3-0.5 s of 5 s; the submodule search 0.2 s of 4.5 s;
the pickling again with the windowing about 0.15 s of 4 s.
"""

from __future__ import annotations

import bz2
import concurrent.futures
import contextlib
import functools
import gc
import sys
import threading
import types
import weakref
from collections.abc import Iterator, Sequence

from apache_beam.internal import cloudpickle_pickler
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.worker import bundle_processor, operations, statesampler
from apache_beam.transforms import core, ptransform, userstate
from apache_beam.transforms import util as transforms_util
from apache_beam.typehints import decorators

_VIEWS = "_views_by_class"


class ParsedOnceOptions(PipelineOptions):
    """``PipelineOptions`` whose ``view_as`` parses the flags once per options class.

    Set values are shared with every view, as with ``PipelineOptions``; the views are
    dropped when the options are copied or pickled (Beam deep-copies them into each
    pipeline), so a copy makes its own.
    """

    def view_as(self, cls):
        # Plain dict access: PipelineOptions.__setattr__ only takes option names.
        views = self.__dict__.setdefault(_VIEWS, {})
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop(_VIEWS, None)
        return state


def pipeline_options(flags: Sequence[str]) -> PipelineOptions:
    """The job's pipeline options from command-line style ``flags`` (``--key=value``)."""
    return ParsedOnceOptions(list(flags))


def _remembered(original, memo_and_key):
    """``original`` (a function of one argument) with its answers remembered in the
    weak-keyed memo and under the key that ``memo_and_key(argument)`` gives; asked each
    time when that gives None or a key that cannot be weakly referenced."""

    @functools.wraps(original)
    def remembered(argument):
        found = memo_and_key(argument)
        if found is None:
            return original(argument)
        memo, key = found
        try:
            return memo[key]
        except KeyError:
            answer = memo[key] = original(argument)
            return answer
        except TypeError:  # cannot be weakly referenced
            return original(argument)

    return remembered


def memoize_dofn_specs() -> None:
    """Makes Beam's ``userstate.get_dofn_specs`` compute its answer once per ``DoFn``
    class (idempotent).

    This replaces a function inside Beam (no option or hook reaches it). The answer
    depends only on the methods ``dir(dofn)`` finds: the class's, and any bound method
    the object holds itself (``beam.ParDo(obj.method)`` wraps one), so it is remembered
    per class for an object that holds none, and per object otherwise. Per class,
    because each bundle processor unpickles its own copy of every ``DoFn``: per object,
    the ~1,000 calls of a small job all missed. ``is_stateful_dofn`` and
    ``validate_stateful_dofn`` call it through the module.
    """
    original = userstate.get_dofn_specs
    if hasattr(original, "__wrapped__"):
        return
    by_class: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    by_object: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def memo_and_key(dofn):
        own = getattr(dofn, "__dict__", None)
        holds_a_method = own is None or any(
            isinstance(value, types.MethodType) for value in own.values())
        return (by_object, dofn) if holds_a_method else (by_class, type(dofn))

    userstate.get_dofn_specs = _remembered(original, memo_and_key)


def memoize_yield_and_return_check() -> None:
    """Makes Beam's check of a ``DoFn``'s ``process`` method for both ``yield`` and
    ``return`` read each method's source once (idempotent).

    The answer is remembered per code object: it is read from the code's source lines
    alone. The check also warns when the method returns None; that warning is then
    logged once per method rather than once per ``ParDo``.
    """
    original = core._check_fn_use_yield_and_return
    if hasattr(original, "__wrapped__"):
        return
    by_code: dict = {}

    @functools.wraps(original)
    def check(fn):
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is None:
            return original(fn)
        if code not in by_code:
            by_code[code] = original(fn)
        return by_code[code]

    core._check_fn_use_yield_and_return = check


def memoize_signatures() -> None:
    """Makes Beam's ``typehints.decorators.get_signature`` (``inspect.signature``) compute
    its answer once per Python function (idempotent).

    Only plain functions and methods bound to an object are remembered: a function's
    signature is fixed once it is defined, and a bound method's is its function's less
    the first parameter, whatever object it is bound to (so one entry serves every
    unpickled copy of a ``DoFn``). Other callables (classes, ``functools.partial``,
    builtins) are asked each time. The modules that imported the function by name
    get the memo too.
    """
    original = decorators.get_signature
    if hasattr(original, "__wrapped__"):
        return
    of_function: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    of_method: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def memo_and_key(func):
        if isinstance(func, types.FunctionType):
            return of_function, func
        if isinstance(func, types.MethodType) and isinstance(func.__func__, types.FunctionType):
            return of_method, func.__func__
        return None

    get_signature = _remembered(original, memo_and_key)
    for module in (decorators, core, ptransform, transforms_util):
        assert module.get_signature is original, module
        module.get_signature = get_signature


def embedded_worker_without_state_cache() -> None:
    """Turns off the state cache of the workers that Beam's local runner runs in its own
    process (in memory, or as threads; idempotent): state and side inputs are then
    read from the runner, as by any worker whose cache misses. Workers in processes of
    their own (``direct_running_mode=multi_processing``) keep theirs."""
    worker_handlers.STATE_CACHE_SIZE_MB = 0


class _StateSamplerWithoutThread(statesampler.StateSampler):
    """Beam's state sampler, which tracks the step each bundle is in (for the worker's
    logs and counters), without the thread that samples how long each step takes."""

    def start(self) -> None:
        self.tracked_thread = threading.current_thread()
        statesampler.set_current_tracker(self)
        self.started = True

    def stop(self) -> None:
        statesampler.set_current_tracker(None)
        self.finished = True


class _InPlaceExecutor(concurrent.futures.Executor):
    """An executor that runs each task in the calling thread, when submitted: its
    future is done (with the task's result or exception) when ``submit`` returns."""

    def __init__(self, *args, **kwargs):
        pass  # a ThreadPoolExecutor's arguments (max_workers, thread_name_prefix)

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 (the future holds it; result() raises it)
            future.set_exception(error)
        return future


def in_process_bundles_without_threads() -> None:
    """Bundle processors of the workers that run in this process (the local runner's)
    start no thread of their own (idempotent):

    - no sampling thread: the stage's steps are still tracked, but their processing
      time is not sampled (Beam's per-step ``msecs`` counters stay at zero, and the
      worker's "operation ongoing" warnings, which read it, are not logged). The
      thread slept between samples, and each bundle waited for its next wake-up.
    - the processor's steps (its unpickled ``DoFn``s) are built in the bundle's own
      thread, not in a thread started for it that the bundle waits for: that thread
      exists so that a remote worker can give up on an unpickling that hangs.

    Workers in processes of their own (``direct_running_mode=multi_processing``, or a
    remote runner's) keep both.
    """
    statesampler.StateSampler = _StateSamplerWithoutThread
    # Beam builds each bundle processor as
    # ``concurrent.futures.ThreadPoolExecutor(max_workers=1).submit(...).result()``;
    # its module gets the same names, with an executor that runs the task in place.
    bundle_processor.concurrent = types.SimpleNamespace(
        futures=types.SimpleNamespace(
            ThreadPoolExecutor=_InPlaceExecutor, TimeoutError=concurrent.futures.TimeoutError
        )
    )


# Pickles up to this size are remembered (Beam's pickled DoFns are a few KiB; a larger
# one carries data, and its compression costs more than the call's fixed cost).
_REMEMBERED_PICKLE_BYTES = 16 * 1024


@functools.lru_cache(maxsize=1024)
def _bz2_compressed(data: bytes, level: int) -> bytes:
    return bz2.compress(data, level)


@functools.lru_cache(maxsize=1024)
def _bz2_small_decompressed(data: bytes) -> bytes | None:
    """``data`` decompressed, or None when it is more than one stream or decompresses
    to more than the remembered size (a few KiB of bz2 can hold megabytes)."""
    decompressor = bz2.BZ2Decompressor()
    raw = decompressor.decompress(data, max_length=_REMEMBERED_PICKLE_BYTES)
    return raw if decompressor.eof and not decompressor.unused_data else None


class _Bz2Remembered:
    """The two functions of the ``bz2`` module that Beam's pickler calls, with the
    answers for small pickles remembered: bz2 is deterministic, so the bytes are those
    that ``bz2`` itself gives, and any Beam worker (remote ones too) reads them."""

    @staticmethod
    def compress(data: bytes, compresslevel: int = 9) -> bytes:
        if len(data) > _REMEMBERED_PICKLE_BYTES:
            return bz2.compress(data, compresslevel)
        return _bz2_compressed(bytes(data), compresslevel)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        if len(data) <= _REMEMBERED_PICKLE_BYTES:
            raw = _bz2_small_decompressed(bytes(data))
            if raw is not None:
                return raw
        return bz2.decompress(data)


def pickles_compressed_once() -> None:
    """Makes Beam's pickler (cloudpickle, its default) compress and decompress each
    small pickle once per process (idempotent; at most 1,024 of each remembered, the
    least recently used dropped first).

    The same bytes come again and again: Beam pickles many a ``DoFn`` that is the same
    as another (tf.Transform applies the same small functions per analyzer), and each
    bundle processor pickles its ``DoFn``s again with their windowing. Only the
    compression is remembered; each unpickling still makes new objects.
    """
    cloudpickle_pickler.bz2 = _Bz2Remembered


def memoize_submodule_search() -> None:
    """Makes cloudpickle (Beam's copy) find the imported submodules a function refers to
    once per code and packages, while ``sys.modules`` stays the same (idempotent).

    Its answer depends on nothing else: the names the code uses, the packages among the
    function's globals and closure values, and the modules imported. ``sys.modules``
    is taken to have changed when its size or its last entry (imports add at the end)
    has; the memo is then emptied.
    """
    original = cloudpickle._find_imported_submodules
    if hasattr(original, "__wrapped__"):
        return
    memo: dict = {}
    modules_seen: list = [None]

    @functools.wraps(original)
    def find(code, top_level_dependencies):
        dependencies = list(top_level_dependencies)
        packages = tuple(
            x.__name__ for x in dependencies
            if isinstance(x, types.ModuleType) and getattr(x, "__package__", None)
        )
        modules = (len(sys.modules), next(reversed(sys.modules)))
        if modules != modules_seen[0]:
            memo.clear()
            modules_seen[0] = modules
        key = (code.co_names, packages)
        found = memo.get(key)
        if found is None:
            found = memo[key] = original(code, dependencies)
        return list(found)

    cloudpickle._find_imported_submodules = find


class _WithWindowing(bytes):
    """What an in-process bundle processor's ``DoFn`` data pickles to, with its
    windowing added (see :func:`dofns_unpickled_with_windowing`): the runner's pickled
    payload and the windowing object, not a pickle of their own (the bytes only say
    what it is)."""

    def __new__(cls, payload: bytes, windowing):
        made = super().__new__(cls, b"tfbake: DoFn data for this process only")
        made.payload, made.windowing = payload, windowing
        return made


class _PicklerWithWindowingHandedOver:
    """Beam's pickler module as the bundle processor and its steps use it, except for
    one round trip: ``dumps`` of the ``DoFn`` data the thread last unpickled, with only
    its windowing (its last item, None) replaced, gives a :class:`_WithWindowing`;
    ``loads`` of that unpickles the payload again and adds the windowing."""

    def __init__(self, pickler_module):
        self._pickler = pickler_module
        self._last = threading.local()

    def __getattr__(self, name):
        return getattr(self._pickler, name)

    def loads(self, encoded, *args, **kwargs):
        if isinstance(encoded, _WithWindowing):
            return self._pickler.loads(encoded.payload)[:-1] + (encoded.windowing,)
        unpickled = self._pickler.loads(encoded, *args, **kwargs)
        self._last.payload, self._last.unpickled = encoded, unpickled
        return unpickled

    def dumps(self, o, *args, **kwargs):
        last = getattr(self._last, "unpickled", None)
        if (
            not args and not kwargs and isinstance(o, tuple) and isinstance(last, tuple)
            and len(o) == len(last) and last[-1] is None
            and all(mine is theirs for mine, theirs in zip(o[:-1], last[:-1]))
        ):
            return _WithWindowing(self._last.payload, o[-1])
        return self._pickler.dumps(o, *args, **kwargs)


def dofns_unpickled_with_windowing() -> None:
    """Bundle processors of the workers that run in this process (the local runner's)
    do not pickle each ``DoFn`` again to add its windowing (idempotent).

    Such a processor unpickles each step's ``DoFn`` data from the runner's payload,
    adds the step's windowing and pickles it again, for the step to unpickle (twice:
    when made and when set up): one pickling per ``ParDo`` per stage, a twentieth of a
    small job. The step now unpickles the payload itself, each time (new objects, as
    before) with the windowing added. Workers in processes of their own keep Beam's way.
    """
    if isinstance(bundle_processor.pickler, _PicklerWithWindowingHandedOver):
        return
    handed_over = _PicklerWithWindowingHandedOver(bundle_processor.pickler)
    bundle_processor.pickler = handed_over
    operations.pickler = handed_over


@contextlib.contextmanager
def older_objects_left_out_of_collection() -> Iterator[None]:
    """Python's garbage collector skips, inside the block, every object that exists when
    it starts (``gc.freeze``), and sees them again after it (``gc.unfreeze``): garbage
    among them is only collected after the block, none is kept for good. Left as it is
    when something else has already frozen objects (a fork server, say)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def cut_overhead() -> None:
    """All of this module's cuts to Beam's per-transform and per-bundle work
    (idempotent); :func:`older_objects_left_out_of_collection` is the job's to enter."""
    memoize_dofn_specs()
    memoize_yield_and_return_check()
    memoize_signatures()
    embedded_worker_without_state_cache()
    in_process_bundles_without_threads()
    pickles_compressed_once()
    memoize_submodule_search()
    dofns_unpickled_with_windowing()
