"""Driver conformance kit: the contract every stimloop driver must pass.

Subclass :class:`StimulatorContract` or :class:`SourceContract` in a test module and
provide one fixture that builds a new, unconnected driver; see
:mod:`stimloop.devices.testing.contract` and the README section "Adding a device driver".

The contracts are imported lazily: this package is also the home of the pytest plugin
(``stimloop.devices.testing.plugin``), which pytest loads before any conftest, and that
must not import pylsl early (a project's conftest may still have to configure liblsl).
"""

from __future__ import annotations

__all__ = ["SourceContract", "StimulatorContract"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from stimloop.devices.testing import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'stimloop.devices.testing' has no attribute {name!r}")
