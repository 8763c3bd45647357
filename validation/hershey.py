"""Hershey vector fonts (Debian's hershey-fonts-data): glyphs as pen strokes, not outlines.

A .jhf file holds one glyph a line for ASCII 32..127: a 5-character number, a 3-character count
of coordinate pairs (the left/right bearing pair included), then the pairs, each coordinate a
character whose offset from "R" is the value; " R" lifts the pen.
"""
from __future__ import annotations

from pathlib import Path

FONTS_DIR = Path("/usr/share/hershey-fonts")


def glyph(font: str, char: str) -> list:
    """The character as strokes of `line` pieces, in the skeleton format of validation/strokes.py
    (y down, as in the file)."""
    lines = (FONTS_DIR / f"{font}.jhf").read_text(encoding="ascii").splitlines()
    record = lines[ord(char) - 32]
    pairs = record[8:]
    coordinates = [pairs[i:i + 2] for i in range(2, len(pairs), 2)]   # skip the bearings
    strokes, current = [], []
    for pair in coordinates:
        if pair == " R":
            strokes.append(current)
            current = []
        else:
            current.append((ord(pair[0]) - ord("R"), ord(pair[1]) - ord("R")))
    strokes.append(current)
    return [[("line", tuple(points))] for points in strokes if len(points) > 1]
