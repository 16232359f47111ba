"""The remembered state and timer specs of a DoFn are Beam's own answer for it."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import userstate

from tfbake.transform.beam_overhead import memoize_dofn_specs

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
