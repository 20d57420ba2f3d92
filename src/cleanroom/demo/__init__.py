"""``cleanroom demo``: the whole multi-party clean room on one machine.

:func:`~cleanroom.demo.flow` holds the steps; :mod:`~cleanroom.demo.services` starts the
parties' servers as real processes on loopback; :mod:`~cleanroom.demo.leakscan` checks the
operator's store for plaintext; :mod:`~cleanroom.demo.report` writes ``report.html``.
"""

from cleanroom.demo.flow import DemoOptions, Progress

__all__ = ["DemoOptions", "Progress"]
