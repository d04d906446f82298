"""A tiny line-plot writer: PNG files from a few series, with no plotting library.

ripple's evaluation commands draw their curves (Zhao et al. Fig. 4d: accuracy against the
confidence percentile) with this module alone: an RGB canvas in a ``bytearray``, lines
drawn with Bresenham's algorithm, labels in a built-in 5x7 pixel font (upper case, digits
and a little punctuation), and the PNG written with ``zlib`` and ``struct`` (one IDAT chunk,
filter type 0 on every row).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Final

__all__ = ["Canvas", "line_plot", "write_png"]

Color = tuple[int, int, int]

WHITE: Final = (255, 255, 255)
BLACK: Final = (0, 0, 0)
GRID: Final = (225, 225, 225)
PALETTE: Final = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))

# 5x7 glyphs, one string per row, "#" = ink. Lower-case text is drawn in upper case.
_GLYPHS: Final[dict[str, tuple[str, ...]]] = {
    " ": ("     ",) * 7,
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "D": ("###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
    ",": ("     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "),
    ":": ("     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "),
    "-": ("     ", "     ", "     ", "#####", "     ", "     ", "     "),
    "+": ("     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "),
    "%": ("##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"),
    "(": ("   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "),
    ")": (" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "),
    "/": ("     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "),
    "=": ("     ", "     ", "#####", "     ", "#####", "     ", "     "),
    "@": (" ### ", "#   #", "    #", " ## #", "# # #", "# # #", " ### "),
    "?": (" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "),
}
_ADVANCE: Final = 6  # glyph width + one column of space


class Canvas:
    """An RGB image in memory: ``pixels[3 * (y * width + x)]`` is the red byte of (x, y)."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i : i + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        i = 3 * (y * self.width + x)
        return (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2])

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, thickness: int = 1) -> None:
        """Bresenham's line; ``thickness`` > 1 stamps a small square at each point."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        half = thickness // 2
        while True:
            for ox in range(-half, thickness - half):
                for oy in range(-half, thickness - half):
                    self.set(x0 + ox, y0 + oy, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """A filled rectangle, corners included."""
        for y in range(min(y0, y1), max(y0, y1) + 1):
            for x in range(min(x0, x1), max(x0, x1) + 1):
                self.set(x, y, color)

    def text(self, x: int, y: int, text: str, color: Color = BLACK, vertical: bool = False) -> None:
        """``text`` with its top-left corner at (x, y); bottom-to-top when ``vertical``."""
        for n, char in enumerate(text.upper()):
            glyph = _GLYPHS.get(char, _GLYPHS["?"])
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        if vertical:
                            self.set(x + row, y - n * _ADVANCE - col, color)
                        else:
                            self.set(x + n * _ADVANCE + col, y + row, color)


def text_width(text: str) -> int:
    """Pixels taken by ``text`` in the built-in font."""
    return max(len(text) * _ADVANCE - 1, 0)


def write_png(path: Path, canvas: Canvas) -> None:
    """Write ``canvas`` as an 8-bit RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    stride = 3 * canvas.width
    raw = b"".join(
        b"\x00" + bytes(canvas.pixels[y * stride : (y + 1) * stride]) for y in range(canvas.height)
    )
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / (count - 1) if count > 1 else 0.0
    return [low + i * step for i in range(count)]


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 or abs(value) >= 10 else f"{value:.2f}"


def line_plot(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 420,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> Canvas:
    """Draw each ``name -> (xs, ys)`` series as a line with markers and write a PNG.

    Axes span the data (``x_range``/``y_range`` fix them), with five labelled ticks each, a
    light grid, the title on top and a legend in the top-left corner. Returns the canvas.
    """
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    if not xs_all:
        raise ValueError("nothing to plot")
    x_low, x_high = x_range if x_range is not None else (min(xs_all), max(xs_all))
    y_low, y_high = y_range if y_range is not None else (min(ys_all), max(ys_all))
    if x_high == x_low:
        x_high = x_low + 1.0
    if y_high == y_low:
        y_high = y_low + 1.0
    canvas = Canvas(width, height)
    left, right, top, bottom = 70, width - 20, 40, height - 50

    def px(x: float) -> int:
        return round(left + (x - x_low) / (x_high - x_low) * (right - left))

    def py(y: float) -> int:
        return round(bottom - (y - y_low) / (y_high - y_low) * (bottom - top))

    for value in _ticks(x_low, x_high):
        x = px(value)
        canvas.line(x, top, x, bottom, GRID)
        label = _label(value)
        canvas.text(x - text_width(label) // 2, bottom + 8, label)
    for value in _ticks(y_low, y_high):
        y = py(value)
        canvas.line(left, y, right, y, GRID)
        label = _label(value)
        canvas.text(left - 8 - text_width(label), y - 3, label)
    canvas.line(left, top, left, bottom, BLACK)
    canvas.line(left, bottom, right, bottom, BLACK)
    for n, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        points = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True)]
        for (x0, y0), (x1, y1) in pairwise(points):
            canvas.line(x0, y0, x1, y1, color, thickness=2)
        for x, y in points:
            canvas.rect(x - 2, y - 2, x + 2, y + 2, color)
        legend_y = top + 6 + 12 * n
        legend_x = left + 10
        canvas.line(legend_x, legend_y + 3, legend_x + 14, legend_y + 3, color, thickness=2)
        canvas.text(legend_x + 20, legend_y, name)
    if title:
        canvas.text((width - text_width(title)) // 2, 14, title)
    if x_label:
        canvas.text((left + right - text_width(x_label)) // 2, bottom + 26, x_label)
    if y_label:
        canvas.text(14, (top + bottom + text_width(y_label)) // 2, y_label, vertical=True)
    write_png(path, canvas)
    return canvas
