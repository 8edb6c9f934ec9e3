"""Process titles, as pgpool-II shows them in ``ps`` (``pgpool: wait for connection request``)."""

from __future__ import annotations

try:
    import setproctitle as _spt

    _spt.getproctitle()  # read early, before anything changes the environment
except ImportError:  # pragma: no cover - a required dependency; titles are cosmetic
    _spt = None  # type: ignore[assignment]

_current = ""


def set_title(title: str) -> None:
    global _current
    if title == _current:
        return
    _current = title
    if _spt is not None:
        _spt.setproctitle("pgpool: " + title)
