"""``reproq tui``: a Textual app for live monitoring and operator actions.

It reads only through :mod:`reproq.ops.observe` and writes only through :mod:`reproq.ops.admin`,
behind the :class:`~reproq.tui.source.DataSource` seam. Nothing outside this package
imports it, so the rest of reproq stays headless.
"""
