"""Sound events: the unit that annotations, detection and evaluation share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Event:
    """One occurrence of a sound in one audio file.

    Attributes
    ----------
    filename : str
        The audio file's name as the annotations or the detector name it.
    onset, offset : float >= 0
        Start and end in seconds from the start of the file, ``onset <= offset``.
    label : str
        The sound's label.
    confidence : float in [0, 1] or None
        The detector's confidence (the highest frame probability inside the event);
        None for reference annotations.
    """

    filename: str
    onset: float
    offset: float
    label: str
    confidence: float | None = None

    @property
    def duration(self) -> float:
        return self.offset - self.onset
