"""The search's display, picked for where stderr goes: Rich's live one on a terminal, plain lines
elsewhere. Kept apart from ``automl.ui.plain`` (which the ``--jobs`` children use) so that module
never reaches the Rich views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.ui.plain import PlainSearchObserver, stderr_is_terminal

if TYPE_CHECKING:
    from automl.ui.search import RichSearchObserver


def search_observer(total: int | None, epochs: int) -> PlainSearchObserver | RichSearchObserver:
    """The search's display: Rich's live one on a terminal; plain, flushed lines when stderr is a pipe
    or a file. ``total``: trials to run (None: until the deadline); ``epochs``: a trial's most."""
    if not stderr_is_terminal():
        return PlainSearchObserver(total=total)
    from automl.ui.search import RichSearchObserver

    return RichSearchObserver(total=total, epochs=epochs)
