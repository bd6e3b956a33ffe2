"""The hand-drawn progress bar: redrawn in place on a terminal, silent elsewhere."""

from __future__ import annotations

import io

from gateway.datasets.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_redraws_in_place_on_a_terminal() -> None:
    stream = Terminal()
    progress = Progress("import", total=10, stream=stream)
    for _ in range(10):
        progress.advance(note="ok")
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and "\n" not in text[:-1]
    assert "[" + "#" * 30 + "] 10/10" in text.rsplit("\r", 1)[-1]


def test_without_total_it_counts() -> None:
    stream = Terminal()
    progress = Progress("reconcile", stream=stream)
    progress.advance(1234)
    progress.close()
    assert "reconcile 1234 " in stream.getvalue()


def test_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress("export", total=3, stream=stream)
    progress.advance(3)
    progress.close()
    assert stream.getvalue() == ""
