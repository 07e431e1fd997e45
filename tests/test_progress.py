"""Progress bars: drawn when asked, or by default only on a terminal."""

from __future__ import annotations

import io
import sys

from hierarchy.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_draws_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(range(3)).disable
    assert list(progress_bar(range(3))) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress_bar(range(3), file=sys.stderr).disable


def test_explicit_choice_wins(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress_bar(range(3), enabled=True, file=sys.stderr, desc="work")
    assert list(bar) == [0, 1, 2]
    assert "work" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_bar(range(3), enabled=False).disable
