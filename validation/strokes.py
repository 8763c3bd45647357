"""Hand-designed pen skeletons: how people write each digit (and some letters), as strokes.

A glyph is a list of strokes (pen down ... pen up); a stroke is a list of pieces drawn one after
another without lifting the pen; a piece is `curve(...)` (a smooth curve through its points) or
`line(...)` (straight segments with sharp corners). Consecutive pieces share their joining point.
Coordinates: x to the right, y down, the glyph roughly in a 0.6 wide x 1 tall box (lowercase
letters in the lower part of a 1 tall box, as on ruled paper); the renderer rescales the ink to
the tile, so only proportions matter.

Each digit has several variants covering common ways of writing it (a 1 with or without flag and
base, a 7 with or without crossbar, an open or closed 4, ...): the variant name is recorded with
every rendered tile.
"""
from __future__ import annotations

import math

Point = tuple[float, float]


def curve(*points: Point) -> tuple[str, tuple[Point, ...]]:
    return ("curve", points)


def line(*points: Point) -> tuple[str, tuple[Point, ...]]:
    return ("line", points)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> tuple[Point, ...]:
    """Points on an ellipse from angle `start` to `end` (degrees; y points down, so increasing
    angles go clockwise on screen; 0 = right, -90 = top), about one every 30 degrees."""
    steps = max(3, round(abs(end - start) / 30))
    return tuple((cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
                 for a in (start + (end - start) * k / steps for k in range(steps + 1)))


# The shared halves of several variants.
_TWO_TOP = ((.04, .28), (.12, .08), (.3, 0), (.5, .07), (.56, .26), (.46, .5))
_THREE_BOTTOM = ((.22, .47), (.46, .52), (.58, .72), (.48, .93), (.25, 1), (.02, .9))
_FIVE_BELLY = ((.06, .44), (.28, .36), (.5, .44), (.58, .66), (.48, .9), (.26, 1), (.02, .9))
_NINE_LOOP = arc(.3, .25, .27, .25, -5, -365)       # counter-clockwise from the right side
_EIGHT_S = ((.5, .12), (.3, 0), (.1, .1), (.12, .3), (.44, .55), (.56, .78), (.36, 1), (.08, .86),
            (.12, .6), (.44, .36), (.52, .2), (.46, .08))

DIGITS: dict[int, dict[str, list]] = {
    0: {
        "oval": [[curve(*arc(.3, .5, .3, .5, -90, 280))]],
        "oval_ccw_gap": [[curve(*arc(.3, .5, .28, .5, -70, -405))]],
        "pointed_top": [[curve((.32, 0), (.1, .18), (.02, .55), (.14, .9), (.34, 1), (.54, .82),
                               (.58, .42), (.46, .08), (.26, .03))]],
    },
    1: {
        "stick": [[line((.3, 0), (.3, 1))]],
        "flag": [[line((.06, .24), (.32, 0), (.32, 1))]],
        "flag_base": [[line((.06, .24), (.32, 0), (.32, 1))], [line((.04, 1), (.6, 1))]],
        "bowed": [[curve((.36, 0), (.31, .5), (.26, 1))]],
    },
    2: {
        "plain": [[curve(*_TWO_TOP, (.24, .76), (.02, 1)), line((.02, 1), (.62, .98))]],
        "loop": [[curve(*_TWO_TOP, (.26, .72), (.1, .86), (.02, .97), (.1, 1.02), (.24, .97),
                        (.24, .86), (.12, .86), (.14, .97), (.38, 1), (.64, .96))]],
        "wavy_base": [[curve(*_TWO_TOP, (.24, .76), (.02, 1), (.2, .93), (.42, 1), (.64, .94))]],
    },
    3: {
        "two_bumps": [[curve((.04, .12), (.25, 0), (.48, .06), (.52, .24), (.38, .42), (.22, .47)),
                       curve(*_THREE_BOTTOM)]],
        "flat_top": [[line((.02, 0), (.56, 0), (.22, .42)),
                      curve((.22, .42), (.46, .48), (.58, .7), (.48, .92), (.25, 1), (.02, .9))]],
        "round_middle": [[curve((.04, .14), (.25, 0), (.5, .08), (.5, .3), (.3, .46), (.5, .56),
                                (.58, .76), (.45, .95), (.2, .99), (.02, .88))]],
    },
    4: {
        "closed": [[line((.44, 0), (0, .66), (.62, .66))], [line((.44, 0), (.44, 1))]],
        "open": [[line((.06, 0), (.02, .58), (.6, .58))], [line((.44, .12), (.44, 1))]],
        "open_tall_stem": [[line((.1, .06), (.04, .55), (.62, .52))], [line((.46, 0), (.42, 1))]],
    },
    5: {
        "two_strokes": [[line((.1, 0), (.06, .44)), curve(*_FIVE_BELLY)],
                        [line((.1, 0), (.56, 0))]],
        "one_stroke": [[line((.56, 0), (.1, .02), (.06, .44)), curve(*_FIVE_BELLY)]],
        "round_belly": [[line((.12, .02), (.04, .48)),
                         curve((.04, .48), (.3, .38), (.55, .5), (.58, .74), (.42, .96),
                               (.18, .98), (0, .86))],
                        [curve((.12, .02), (.35, 0), (.6, -.03))]],
    },
    6: {
        "curl": [[curve((.52, .02), (.3, .1), (.1, .38), (.04, .7), (.16, .95), (.36, 1),
                        (.52, .86), (.52, .64), (.36, .52), (.16, .56), (.06, .72))]],
        "straight_stem": [[line((.46, 0), (.1, .6)),
                           curve((.1, .6), (.06, .8), (.2, .98), (.4, .98), (.52, .82),
                                 (.46, .62), (.28, .54), (.1, .62))]],
        "small_loop": [[curve((.5, 0), (.25, .2), (.1, .5), (.08, .8), (.22, .98), (.42, .96),
                              (.48, .8), (.35, .68), (.15, .74))]],
    },
    7: {
        "plain": [[line((0, .02), (.58, .02), (.2, 1))]],
        "crossbar": [[line((0, .02), (.58, .02), (.2, 1))], [line((.2, .52), (.56, .5))]],
        "serif": [[line((0, .16), (.02, 0), (.58, .02)), curve((.58, .02), (.42, .4), (.3, 1))]],
        "curved_stem": [[line((0, .02), (.58, .02)),
                         curve((.58, .02), (.4, .38), (.3, .7), (.26, 1))]],
    },
    8: {
        "s_loop": [[curve(*_EIGHT_S)]],
        "two_circles": [[curve(*arc(.3, .23, .2, .23, -90, 272))],
                        [curve(*arc(.3, .72, .27, .28, -90, 272))]],
        "from_middle": [[curve((.3, .46), (.5, .3), (.45, .05), (.25, 0), (.1, .15), (.18, .35),
                               (.3, .46), (.5, .6), (.55, .85), (.35, 1), (.1, .9), (.08, .68),
                               (.3, .46))]],
    },
    9: {
        "straight_tail": [[curve(*_NINE_LOOP), line(_NINE_LOOP[-1], (.52, 1))]],
        "curved_tail": [[curve(*_NINE_LOOP, (.55, .55), (.46, .88), (.28, 1), (.1, .94))]],
        "two_strokes": [[curve(*_NINE_LOOP)], [line((.57, .08), (.54, 1))]],
    },
}

# Letters that are no digit look-alikes (no O D Q I l S Z B G b g q), for the non-digit set.
_P_BOWL = curve((0, 0), (.4, .02), (.56, .25), (.4, .46), (0, .48))
LETTERS: dict[str, list] = {
    "A": [[line((0, 1), (.35, 0), (.7, 1))], [line((.15, .62), (.55, .62))]],
    "C": [[curve(*arc(.4, .5, .38, .5, -40, -320))]],
    "E": [[line((.6, 0), (0, 0), (0, 1), (.6, 1))], [line((0, .5), (.45, .5))]],
    "F": [[line((.6, 0), (0, 0), (0, 1))], [line((0, .48), (.45, .48))]],
    "H": [[line((0, 0), (0, 1))], [line((.6, 0), (.6, 1))], [line((0, .5), (.6, .5))]],
    "K": [[line((0, 0), (0, 1))], [line((.6, 0), (0, .55), (.62, 1))]],
    "M": [[line((0, 1), (.05, 0), (.38, .6), (.72, 0), (.76, 1))]],
    "N": [[line((0, 1), (0, 0), (.6, 1), (.6, 0))]],
    "P": [[line((0, 1), (0, 0)), _P_BOWL]],
    "R": [[line((0, 1), (0, 0)), _P_BOWL], [line((.2, .48), (.6, 1))]],
    "T": [[line((0, 0), (.7, 0))], [line((.35, 0), (.35, 1))]],
    "U": [[curve((0, 0), (.02, .7), (.15, .95), (.35, 1), (.55, .95), (.66, .7), (.68, 0))]],
    "V": [[line((0, 0), (.33, 1), (.66, 0))]],
    "W": [[line((0, 0), (.2, 1), (.42, .3), (.64, 1), (.84, 0))]],
    "X": [[line((0, 0), (.65, 1))], [line((.65, 0), (0, 1))]],
    "Y": [[line((0, 0), (.33, .5), (.66, 0))], [line((.33, .5), (.33, 1))]],
    "a": [[curve(*arc(.25, .7, .24, .29, -20, -345))],
          [line((.5, .42), (.5, .94)), curve((.5, .94), (.56, 1), (.62, .97))]],
    "c": [[curve(*arc(.3, .71, .28, .29, -40, -320))]],
    "e": [[curve((.05, .7), (.55, .68), (.5, .5), (.3, .42), (.08, .55), (.05, .8), (.25, 1),
                 (.55, .94))]],
    "h": [[line((0, 0), (0, 1))], [curve((0, .62), (.2, .45), (.42, .48), (.5, .65)),
                                   line((.5, .65), (.5, 1))]],
    "k": [[line((0, 0), (0, 1))], [line((.45, .42), (0, .72), (.48, 1))]],
    "m": [[line((0, .42), (0, 1))],
          [curve((0, .56), (.12, .42), (.26, .46), (.3, .6)), line((.3, .6), (.3, 1))],
          [curve((.3, .56), (.42, .42), (.56, .46), (.6, .6)), line((.6, .6), (.6, 1))]],
    "n": [[line((0, .42), (0, 1))],
          [curve((0, .58), (.15, .42), (.36, .45), (.42, .62)), line((.42, .62), (.42, 1))]],
    "r": [[line((0, .42), (0, 1))], [curve((0, .62), (.14, .46), (.3, .42), (.42, .46))]],
    "u": [[curve((0, .42), (.02, .85), (.15, 1), (.32, .98), (.46, .85))],
          [line((.48, .42), (.48, 1))]],
    "v": [[line((0, .42), (.25, 1), (.5, .42))]],
    "w": [[line((0, .42), (.15, 1), (.3, .6), (.45, 1), (.6, .42))]],
    "x": [[line((0, .42), (.5, 1))], [line((.5, .42), (0, 1))]],
    "y": [[line((0, .42), (.25, .82))], [line((.52, .42), (.12, 1.4))]],
}
