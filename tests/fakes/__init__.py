"""Test doubles shared by the test-suite."""

from tests.fakes.upstream import FakeUpstream, Fault, RecordedRequest

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]
