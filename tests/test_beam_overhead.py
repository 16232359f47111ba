"""What Beam remembers for a DoFn or function (its state and timer specs, its
signature) is Beam's own answer for it; a local job's bundles without their threads
count, track their steps and fail as Beam's do; pickles compressed once are the bytes
bz2 gives; the submodules found for a pickled function are cloudpickle's own, after
new imports too; the job's garbage is still collected."""

from __future__ import annotations

import base64
import bz2
import functools
import gc
import importlib
import sys
import weakref

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.internal import cloudpickle_pickler, pickler
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.runners.worker import bundle_processor, statesampler
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, ptransform, userstate
from apache_beam.transforms.window import FixedWindows, TimestampedValue
from apache_beam.typehints import decorators

from tfbake.transform import beam_overhead
from tfbake.transform.beam_overhead import (
    cut_overhead,
    memoize_dofn_specs,
    memoize_signatures,
    memoize_submodule_search,
    memoize_yield_and_return_check,
    older_objects_left_out_of_collection,
    pickles_compressed_once,
    pipeline_options,
)
from tfbake.transform.pipeline import _pipeline as job_pipeline

COUNT = userstate.CombiningValueStateSpec("count", VarIntCoder(), sum)


class _Counting:
    def count(self, element, count=beam.DoFn.StateParam(COUNT)):
        count.add(1)
        yield element


class _StatefulDoFn(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


def test_each_dofn_gets_beams_own_specs_in_any_order():
    memoize_dofn_specs()
    remembered = userstate.get_dofn_specs
    beams_own = remembered.__wrapped__
    # The same class (Beam's wrapper of a callable) stateless around a lambda and
    # stateful around a bound method: remembered per class, one would get the other's.
    dofns = [
        beam.ParDo(lambda element: [element]).fn,
        beam.ParDo(_Counting().count).fn,
        beam.ParDo(lambda element: [element]).fn,
        _StatefulDoFn(),
        _StatefulDoFn(),
        beam.ParDo(_Counting().count).fn,
    ]
    expected = [beams_own(dofn) for dofn in dofns]
    assert [bool(states) for states, _ in expected] == [False, True, False, True, True, True]
    for order in (dofns, dofns[::-1]):
        for dofn in order:
            assert remembered(dofn) == beams_own(dofn)
            assert userstate.is_stateful_dofn(dofn) == bool(beams_own(dofn)[0])


class _Methods:
    def process(self, element, side=None):
        yield element

    @classmethod
    def build(cls, size: int, *, name: str = "x"):
        return cls()


def _plain(element, count: int = 1):
    return [element] * count


class _YieldsAndReturns(beam.DoFn):
    def process(self, element):
        if element:
            return [element]
        yield element


class _Yields(beam.DoFn):
    def process(self, element):
        yield element


def test_each_dofn_gets_beams_own_yield_and_return_check():
    memoize_yield_and_return_check()
    remembered = core._check_fn_use_yield_and_return
    beams_own = remembered.__wrapped__
    methods = [
        _YieldsAndReturns().process, _Yields().process, beam.Map(len).fn.process,
        _YieldsAndReturns().process, _Yields().process, len,
    ]
    expected = [beams_own(m) for m in methods]
    assert expected == [True, False, False, True, False, False]
    for order in (methods, methods[::-1]):
        assert [remembered(m) for m in order] == [beams_own(m) for m in order]


def test_each_remembered_signature_is_inspects_own():
    memoize_signatures()
    remembered = decorators.get_signature
    # The modules that imported Beam's function by name call the memo too.
    assert core.get_signature is remembered is ptransform.get_signature
    callables = [
        _plain,
        _Methods.process,  # the plain function: self is a parameter
        _Methods().process,  # bound: self is not, whichever object it is bound to
        _Methods().process,
        _Methods.build,
        lambda a, b=2: a,
        functools.partial(_plain, count=3),
        str.upper,  # Beam types the first argument of a method descriptor
        _Methods,
    ]
    for order in (callables, callables[::-1]):
        for func in order:
            assert remembered(func) == remembered.__wrapped__(func), func
    assert list(remembered(_Methods.process).parameters) == ["self", "element", "side"]
    assert list(remembered(_Methods().process).parameters) == ["element", "side"]


class _StepOfEachElement(beam.DoFn):
    """Counts elements, and tags each with the step Beam's state tracker says it is in
    (what the worker's log records are tagged with)."""

    def process(self, element, side):
        beam.metrics.Metrics.counter("test", "elements").inc()
        step = statesampler.get_current_tracker().current_state().name_context.step_name
        yield element + side, step


class _FailsWhereUnpickled(beam.DoFn):
    """A DoFn that cannot be unpickled once ``broken`` (as one whose module is missing
    where it runs): the worker fails while it builds the bundle's steps."""

    broken = False

    def __setstate__(self, state):
        if _FailsWhereUnpickled.broken:
            raise ValueError("cannot unpickle the DoFn of step Open")
        self.__dict__.update(state)

    def setup(self):
        raise ValueError("cannot open the vocabulary of feature carrier")

    def process(self, element):
        yield element


def _local_pipeline() -> beam.Pipeline:
    """A pipeline as the job builds one on this machine (FnApiRunner, in memory)."""
    flags = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    return job_pipeline(pipeline_options(flags))


def test_bundles_without_their_threads_count_track_steps_and_fail_as_beams_do():
    cut_overhead()
    pipeline = _local_pipeline()
    side = pipeline | "Side" >> beam.Create([10])
    # Each step of its own stage (a side input starts one), so each is its own bundle.
    first = (pipeline | "Create" >> beam.Create([1, 2, 3])
             | "AddOnce" >> beam.ParDo(_StepOfEachElement(), beam.pvalue.AsSingleton(side)))
    second = (first | "Value" >> beam.Map(lambda pair: pair[0])
              | "AddTwice" >> beam.ParDo(_StepOfEachElement(), beam.pvalue.AsSingleton(side)))
    assert_that(first, equal_to([(11, "AddOnce"), (12, "AddOnce"), (13, "AddOnce")]), "First")
    assert_that(second, equal_to([(21, "AddTwice"), (22, "AddTwice"), (23, "AddTwice")]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_name("elements"))
    assert {c.key.step: c.committed for c in counters["counters"]} == {
        "AddOnce": 3, "AddTwice": 3}

    # A step that fails where it is built, or set up, fails the job with its error.
    for broken, error in ((True, "cannot unpickle the DoFn of step Open"),
                          (False, "cannot open the vocabulary of feature carrier")):
        failing = _local_pipeline()
        _ = failing | beam.Create([1]) | "Open" >> beam.ParDo(_FailsWhereUnpickled())
        _FailsWhereUnpickled.broken = broken
        try:
            with pytest.raises(Exception, match=error):
                failing.run().wait_until_finish()
        finally:
            _FailsWhereUnpickled.broken = False


class _WindowStartOnce(beam.DoFn):
    """Pairs each element with its window's start; records each object set up."""

    set_up: list = []

    def setup(self):
        _WindowStartOnce.set_up.append(self)
        self.seen = 0

    def process(self, element, window=beam.DoFn.WindowParam):
        self.seen += 1
        yield element, int(window.start), self.seen


def test_steps_get_their_windowing_and_dofns_of_their_own_without_pickling_again():
    cut_overhead()
    assert isinstance(bundle_processor.pickler, beam_overhead._PicklerWithWindowingHandedOver)
    pipeline = _local_pipeline()
    windowed = (
        pipeline | beam.Create([1, 2, 13, 25])
        | beam.Map(lambda x: TimestampedValue(x, x))
        | beam.WindowInto(FixedWindows(10))
    )
    dofn = _WindowStartOnce()
    _WindowStartOnce.set_up.clear()
    first = windowed | "First" >> beam.ParDo(dofn)
    # The same DoFn object again, in the same stage: each step must get its own copy
    # (its count of elements starts again).
    second = windowed | "Second" >> beam.ParDo(dofn)
    expected = [(1, 0), (2, 0), (13, 10), (25, 20)]
    for label, output in (("First", first), ("Second", second)):
        assert_that(output | f"Drop{label}" >> beam.Map(lambda t: (t[0], t[1])),
                    equal_to(expected), label=f"Check{label}")
        assert_that(output | f"Counts{label}" >> beam.Map(lambda t: t[2]),
                    equal_to([1, 2, 3, 4]), label=f"Count{label}")
    pipeline.run().wait_until_finish()
    made = _WindowStartOnce.set_up
    assert len(made) == 2 and made[0] is not made[1] and dofn not in made


def test_pickles_compressed_once_are_the_bytes_bz2_gives_and_read_back():
    pickles_compressed_once()
    remembered = cloudpickle_pickler.bz2
    vocabulary = ["EWR", "JFK", "LGA"] * 10

    def of(obj) -> bytes:  # bz2's own, level 9 as Beam's pickler asks for
        return base64.b64encode(bz2.compress(cloudpickle_pickler._dumps(obj), 9))

    for obj in (_StatefulDoFn(), vocabulary, _StatefulDoFn()):
        encoded = pickler.dumps(obj)
        assert encoded == of(obj)
        assert type(pickler.loads(encoded)) is type(obj)
    assert pickler.loads(pickler.dumps(vocabulary)) == vocabulary

    # Large ones pass through; so do small bz2 streams that decompress to much more,
    # and two streams one after the other (bz2's own reads both).
    large = list(range(20_000))
    assert pickler.loads(pickler.dumps(large)) == large
    zeros = bytes(4_000_000)
    assert len(bz2.compress(zeros)) < 100
    assert remembered.decompress(bz2.compress(zeros)) == zeros
    two = bz2.compress(b"tf.") + bz2.compress(b"Example")
    assert remembered.decompress(two) == b"tf.Example"
    assert remembered.compress(b"x" * 10, compresslevel=1) == bz2.compress(b"x" * 10, 1)


def test_submodules_found_are_cloudpickles_own_after_new_imports_too(tmp_path, monkeypatch):
    memoize_submodule_search()
    remembered = cloudpickle._find_imported_submodules
    own = remembered.__wrapped__
    package = tmp_path / "tfbake_test_package"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("value = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tfbake_test_package", raising=False)
    monkeypatch.delitem(sys.modules, "tfbake_test_package.sub", raising=False)
    imported = importlib.import_module("tfbake_test_package")
    read = eval("lambda: tfbake_test_package.sub.value", {"tfbake_test_package": imported})
    uses_beam = eval("lambda path: beam.io.filesystems.FileSystems.exists(path)", {"beam": beam})

    def answers(fn):
        code, dependencies = fn.__code__, list(fn.__globals__.values())
        return remembered(code, dependencies), own(code, dependencies)

    for _ in range(2):  # the second time from the memo
        assert answers(read) == ([], [])
        mine, theirs = answers(uses_beam)
        assert mine == theirs and mine
    importlib.import_module("tfbake_test_package.sub")  # imported since: found now
    assert answers(read) == ([sys.modules["tfbake_test_package.sub"]],) * 2
    assert pickler.loads(pickler.dumps(read))() == 7


class _Node:
    def __init__(self):
        self.other = self  # a reference cycle: only the garbage collector frees it


def test_garbage_of_objects_from_before_the_block_is_collected_after_it():
    if gc.get_freeze_count():
        pytest.skip("objects are frozen already; the block leaves them as they are")
    before = _Node()
    older = weakref.ref(before)
    del before  # garbage, made before the block
    with older_objects_left_out_of_collection():
        inside = _Node()
        newer = weakref.ref(inside)
        del inside
        gc.collect()
        assert newer() is None  # the block's own garbage is collected in it
        assert older() is not None  # left out of collection in the block
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert older() is None  # and collected after it


def test_objects_frozen_by_others_stay_frozen():
    if gc.get_freeze_count():
        pytest.skip("objects are frozen already")
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with older_objects_left_out_of_collection():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
