"""What Beam remembers for a DoFn or function (its state and timer specs, its
signature) is Beam's own answer for it."""

from __future__ import annotations

import functools

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import core, ptransform, userstate
from apache_beam.typehints import decorators

from tfbake.transform.beam_overhead import memoize_dofn_specs, memoize_signatures

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
