"""Which liblsl configuration a process uses (set before liblsl is first used)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def machine_scope_config() -> Path:
    """Path of the packaged liblsl config that keeps all streams on this machine.

    See the comments in ``stream/lsl_machine.cfg`` for why it resolves through the
    loopback broadcast address.
    """
    return Path(str(resources.files("stimloop.stream").joinpath("lsl_machine.cfg")))


def use_machine_scope(force: bool = False) -> str:
    """Point ``LSLAPICFG`` at :func:`machine_scope_config` for this process and its children.

    liblsl reads its configuration once, when first used, so call this before anything
    imports ``pylsl``'s library functions.

    Parameters
    ----------
    force : bool
        Replace an ``LSLAPICFG`` the user already set (the test suite does; the demo
        respects the user's choice).

    Returns
    -------
    str
        The configuration file in effect.
    """
    if force or "LSLAPICFG" not in os.environ:
        os.environ["LSLAPICFG"] = str(machine_scope_config())
    return os.environ["LSLAPICFG"]
