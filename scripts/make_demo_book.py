"""Draw the illustrations of the bundled demo book "Forest Friends".

The demo book (``pipeline/demo/book/``) needs ten square picture-book pages
that we are free to ship. This script draws them from simple shapes with
numpy and Pillow, in a flat-colour, vector-like style: gradient skies, rolling
hills, trees, flowers, a house, a river with a boat, a fox, an owl and a
rabbit, a starry night and a twilight homecoming.

Six pages show the hero, a child whose head is a plain skin-toned oval under a
hair cap, with no eyes or mouth: the pipeline pastes the child's photo face
there. The face transfer puts the photo's eyes onto the page's face slot and
blends an ellipse centred 0.35*d below the eye midpoint with semi-axes
1.05*d x 1.40*d (d = distance between the slot's eyes), so the head oval is
drawn around that ellipse (centre 0.3*d below the eye line, semi-axes
1.35*d x 1.75*d) and the hair stays outside it. The face slots are printed as
YAML, ready for ``book.yaml``.

Everything is drawn at 2x and box-downscaled to 2480x2480 for anti-aliasing.
The output is deterministic: the only randomness comes from numpy generators
with fixed seeds. The script writes ``pages/01.png`` ... ``pages/10.png`` and
nothing else.

Usage::

    .venv/bin/python scripts/make_demo_book.py [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

W = H = 2480  # output page size in px
SS = 2  # supersampling factor: pages are drawn at SS*W and box-downscaled
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "pipeline" / "demo" / "book" / "pages"

# --- palette -----------------------------------------------------------------

DAY_SKY = [(0.0, (132, 199, 232)), (0.45, (190, 228, 242)), (0.75, (236, 246, 240)), (1.0, (236, 246, 240))]
GRASS = (138, 196, 92)
GRASS_DARK = (104, 166, 74)
GRASS_LIGHT = (176, 216, 112)
FAR_HILL = (168, 210, 160)
LEAF = (92, 168, 84)
LEAF_DARK = (62, 128, 70)
LEAF_LIGHT = (140, 200, 100)
PINE = (58, 124, 96)
PINE_DARK = (40, 96, 78)
TRUNK = (128, 86, 58)
TRUNK_DARK = (100, 64, 44)
WHITE = (255, 255, 255)
CREAM = (255, 248, 232)
INK = (58, 40, 32)

SKIN = (241, 200, 168)
SKIN_SHADE = (222, 172, 140)
HAIR = (122, 80, 48)
HAIR_LIGHT = (156, 108, 68)
SHIRT = (255, 196, 64)
SHIRT_SHADE = (236, 168, 44)
DUNGAREES = (74, 124, 196)
DUNGAREES_SHADE = (58, 100, 166)
SHOE = (214, 72, 66)

FOX = (232, 122, 52)
FOX_DARK = (196, 92, 38)
OWL = (150, 104, 72)
OWL_DARK = (118, 78, 54)
OWL_BELLY = (226, 196, 150)
BUNNY = (226, 220, 214)
BUNNY_SHADE = (200, 192, 186)
PINK = (244, 164, 172)
ORANGE = (246, 164, 58)

FLOWER_COLOURS = [(245, 110, 120), (255, 214, 80), (250, 250, 245), (186, 140, 226), (255, 150, 70)]


# --- geometry helpers ---------------------------------------------------------


def ellipse_pts(cx, cy, rx, ry, angle=0.0, start=0.0, end=360.0, n=None):
    """Points of a (rotated) ellipse or elliptical arc, angles in degrees."""
    if n is None:
        n = int(min(max(max(rx, ry) * SS / 3, 48), 720))
    t = np.radians(np.linspace(start, end, n, endpoint=(end - start) < 360))
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    x, y = rx * np.cos(t), ry * np.sin(t)
    return list(zip(cx + x * ca - y * sa, cy + x * sa + y * ca))


def star_pts(cx, cy, r, inner=0.45, spikes=5, angle=-90.0):
    """Points of a star polygon."""
    pts = []
    for i in range(spikes * 2):
        rr = r if i % 2 == 0 else r * inner
        a = math.radians(angle + i * 180.0 / spikes)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def wave_y(x, base, amp, waves):
    """Height of a rolling hill line: base minus a sum of weighted sines."""
    return base - amp * sum(w * math.sin(2 * math.pi * x / lam + ph) for lam, ph, w in waves)


def hill_pts(base, amp, waves, bottom=H + 10, x0=-40, x1=W + 40, step=16):
    """Polygon of a hill band from a wavy top line down to `bottom`."""
    top = [(x, wave_y(x, base, amp, waves)) for x in range(x0, x1 + step, step)]
    return top + [(x1, bottom), (x0, bottom)]


def gradient_strip(length, stops):
    """(length, 3) uint8 colours interpolated through [(pos 0..1, rgb), ...]."""
    t = np.linspace(0.0, 1.0, max(length, 1))
    pos = [p for p, _ in stops]
    cols = [np.interp(t, pos, [c[i] for _, c in stops]) for i in range(3)]
    return np.round(np.stack(cols, axis=-1)).astype(np.uint8)


def mix(a, b, t):
    """Linear blend of two RGB colours."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


# --- canvas -------------------------------------------------------------------


class Canvas:
    """A page drawn at SS x resolution; all coordinates are output px."""

    def __init__(self, sky_stops):
        column = gradient_strip(H * SS, sky_stops)[:, None, :]
        self.img = Image.fromarray(column, "RGB").resize((W * SS, H * SS), Image.NEAREST)
        self.draw = ImageDraw.Draw(self.img, "RGBA")

    @staticmethod
    def _s(pts):
        return [(x * SS, y * SS) for x, y in pts]

    def ellipse(self, cx, cy, rx, ry, fill):
        self.draw.ellipse([(cx - rx) * SS, (cy - ry) * SS, (cx + rx) * SS, (cy + ry) * SS], fill=fill)

    def circle(self, cx, cy, r, fill):
        self.ellipse(cx, cy, r, r, fill)

    def poly(self, pts, fill):
        self.draw.polygon(self._s(pts), fill=fill)

    def rect(self, x0, y0, x1, y1, fill, r=0):
        box = [x0 * SS, y0 * SS, x1 * SS, y1 * SS]
        if r:
            self.draw.rounded_rectangle(box, radius=r * SS, fill=fill)
        else:
            self.draw.rectangle(box, fill=fill)

    def line(self, pts, fill, width, caps=True):
        self.draw.line(self._s(pts), fill=fill, width=max(1, round(width * SS)), joint="curve")
        if caps:
            for x, y in (pts[0], pts[-1]):
                self.circle(x, y, width / 2, fill)

    def paint(self, fill, shapes, clip=(), cut=()):
        """Fill union(shapes) & union(clip) - union(cut) with a colour or gradient stops.

        Gradient stops run from the top to the bottom of the shapes' bounding box.
        """
        xs = [x for sh in shapes for x, _ in sh]
        ys = [y for sh in shapes for _, y in sh]
        x0, y0 = max(0, int(min(xs) * SS) - 2), max(0, int(min(ys) * SS) - 2)
        x1, y1 = min(W * SS, int(max(xs) * SS) + 3), min(H * SS, int(max(ys) * SS) + 3)
        if x1 <= x0 or y1 <= y0:
            return
        size = (x1 - x0, y1 - y0)

        def layer(polys, value=255, base=0):
            m = Image.new("L", size, base)
            d = ImageDraw.Draw(m)
            for sh in polys:
                d.polygon([(x * SS - x0, y * SS - y0) for x, y in sh], fill=value)
            return m

        mask = layer(shapes)
        if clip:
            mask = ImageChops.multiply(mask, layer(clip))
        if cut:
            mask = ImageChops.multiply(mask, layer(cut, value=0, base=255))
        if isinstance(fill, list):
            column = gradient_strip(size[1], fill)[:, None, :]
            src = Image.fromarray(column, "RGB").resize(size, Image.NEAREST)
            self.img.paste(src, (x0, y0), mask)
        else:
            if len(fill) == 4:
                mask = mask.point(lambda v, a=fill[3]: v * a // 255)
            self.img.paste(fill[:3], (x0, y0, x1, y1), mask)

    def glow(self, cx, cy, r, colour, rings=4, alpha=34, spread=0.9):
        """Concentric translucent discs: a flat-style halo around a light."""
        for i in range(rings, 0, -1):
            self.circle(cx, cy, r * (1 + spread * i / rings), (*colour, alpha))

    def finish(self):
        return self.img.reduce(SS)


class Silhouette:
    """Draws through a Canvas with every opaque fill replaced by one colour.

    Translucent fills (cheek blush, glows) are skipped, so any figure function
    turns into a flat silhouette, e.g. against a sunset.
    """

    def __init__(self, canvas, colour):
        self.canvas, self.colour = canvas, colour

    def _skip(self, fill):
        return isinstance(fill, tuple) and len(fill) == 4

    def ellipse(self, cx, cy, rx, ry, fill):
        if not self._skip(fill):
            self.canvas.ellipse(cx, cy, rx, ry, self.colour)

    def circle(self, cx, cy, r, fill):
        self.ellipse(cx, cy, r, r, fill)

    def poly(self, pts, fill):
        if not self._skip(fill):
            self.canvas.poly(pts, self.colour)

    def rect(self, x0, y0, x1, y1, fill, r=0):
        if not self._skip(fill):
            self.canvas.rect(x0, y0, x1, y1, self.colour, r)

    def line(self, pts, fill, width, caps=True):
        if not self._skip(fill):
            self.canvas.line(pts, self.colour, width, caps)

    def paint(self, fill, shapes, clip=(), cut=()):
        if not self._skip(fill):
            self.canvas.paint(self.colour, shapes, clip, cut)

    def glow(self, *args, **kwargs):
        pass


# --- scenery ------------------------------------------------------------------


def sun(c, x, y, r, rays=True):
    c.glow(x, y, r, (255, 236, 160), rings=3, alpha=40, spread=0.8)
    if rays:
        for i in range(12):
            a = math.radians(i * 30 + 15)
            pts = [
                (x + 1.15 * r * math.cos(a - 0.09), y + 1.15 * r * math.sin(a - 0.09)),
                (x + 1.55 * r * math.cos(a), y + 1.55 * r * math.sin(a)),
                (x + 1.15 * r * math.cos(a + 0.09), y + 1.15 * r * math.sin(a + 0.09)),
            ]
            c.poly(pts, (255, 214, 96))
    c.circle(x, y, r, (255, 206, 84))
    c.circle(x - 0.12 * r, y - 0.12 * r, 0.78 * r, (255, 222, 112))


def cloud(c, x, y, s, colour=WHITE, shade=(214, 232, 244)):
    blobs = [(-0.55, 0.05, 0.32), (-0.2, -0.2, 0.42), (0.22, -0.28, 0.48), (0.6, 0.0, 0.34), (0.0, 0.05, 0.4)]
    for dx, dy, k in blobs:
        c.circle(x + dx * s + 0.04 * s, y + dy * s + 0.07 * s, k * s, shade)
    c.rect(x - 0.55 * s, y - 0.05 * s, x + 0.6 * s, y + 0.34 * s + 0.07 * s, shade, r=0.2 * s)
    for dx, dy, k in blobs:
        c.circle(x + dx * s, y + dy * s, k * s, colour)
    c.rect(x - 0.55 * s, y - 0.05 * s, x + 0.6 * s, y + 0.34 * s, colour, r=0.2 * s)


def hills(c, base, amp, waves, fill):
    c.paint(fill, [hill_pts(base, amp, waves)])


def round_tree(c, x, ground, h, leaf=LEAF, dark=LEAF_DARK, light=LEAF_LIGHT, fruit=None):
    tw = 0.1 * h
    c.poly([(x - tw * 0.7, ground), (x - tw * 0.45, ground - 0.55 * h), (x + tw * 0.45, ground - 0.55 * h), (x + tw * 0.7, ground)], TRUNK)
    c.poly([(x + tw * 0.1, ground), (x + tw * 0.15, ground - 0.55 * h), (x + tw * 0.45, ground - 0.55 * h), (x + tw * 0.7, ground)], TRUNK_DARK)
    r = 0.3 * h
    cy = ground - 0.68 * h
    blobs = [(0, 0, 1.0), (-0.62, 0.28, 0.68), (0.62, 0.26, 0.7), (-0.34, -0.42, 0.72), (0.36, -0.36, 0.7)]
    for dx, dy, k in blobs:
        c.circle(x + dx * r + 0.05 * r, cy + dy * r + 0.08 * r, k * r, dark)
    for dx, dy, k in blobs:
        c.circle(x + dx * r - 0.03 * r, cy + dy * r - 0.04 * r, k * r * 0.9, leaf)
    for dx, dy, k in blobs[3:]:
        c.circle(x + dx * r - 0.2 * r, cy + dy * r - 0.22 * r, k * r * 0.38, light)
    if fruit:
        for dx, dy in [(-0.5, 0.3), (0.2, 0.1), (0.55, 0.45), (-0.1, -0.45), (0.45, -0.3), (-0.7, -0.05)]:
            c.circle(x + dx * r, cy + dy * r, 0.07 * r, fruit)


def pine_tree(c, x, ground, h, colour=PINE, dark=PINE_DARK, trunk=TRUNK_DARK):
    tw = 0.07 * h
    c.rect(x - tw / 2, ground - 0.2 * h, x + tw / 2, ground, trunk)
    for top, bot, half in [(0.0, 0.42, 0.22), (0.22, 0.66, 0.3), (0.44, 0.88, 0.38)]:
        yt, yb = ground - h + top * h, ground - h + bot * h
        c.poly([(x, yt), (x + half * h, yb), (x - half * h, yb)], colour)
        c.poly([(x, yt), (x + half * h, yb), (x + 0.1 * half * h, yb)], dark)


def bush(c, x, ground, s, colour=GRASS_DARK, light=GRASS, berries=None):
    for dx, dy, k in [(-0.5, -0.25, 0.45), (0.0, -0.45, 0.55), (0.5, -0.25, 0.45)]:
        c.circle(x + dx * s, ground + dy * s, k * s, colour)
    c.rect(x - 0.95 * s, ground - 0.3 * s, x + 0.95 * s, ground, colour, r=0.15 * s)
    c.circle(x - 0.12 * s, ground - 0.62 * s, 0.22 * s, light)
    if berries:
        for dx, dy in [(-0.55, -0.35), (-0.2, -0.6), (0.25, -0.45), (0.6, -0.3), (0.05, -0.2)]:
            c.circle(x + dx * s, ground + dy * s, 0.07 * s, berries)


def flower(c, x, y, r, petal, centre=(255, 196, 64), stem=GRASS_DARK):
    c.line([(x, y), (x + 0.1 * r, y + 3.2 * r)], stem, 0.32 * r, caps=False)
    c.ellipse(x + 0.7 * r, y + 1.9 * r, 0.6 * r, 0.25 * r, stem)
    for i in range(5):
        a = math.radians(i * 72 - 90)
        c.circle(x + 0.75 * r * math.cos(a), y + 0.75 * r * math.sin(a), 0.55 * r, petal)
    c.circle(x, y, 0.45 * r, centre)


def flower_field(c, seed, n, x_range, y_range, r_range, colours=FLOWER_COLOURS, avoid=()):
    """Scatter flowers deterministically; far ones (small y) are drawn first and smaller."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        x = rng.uniform(*x_range)
        y = rng.uniform(*y_range)
        if any(ax0 <= x <= ax1 and ay0 <= y <= ay1 for ax0, ay0, ax1, ay1 in avoid):
            continue
        t = (y - y_range[0]) / max(1, y_range[1] - y_range[0])
        items.append((y, x, r_range[0] + t * (r_range[1] - r_range[0]), colours[int(rng.integers(len(colours)))]))
    for y, x, r, col in sorted(items):
        flower(c, x, y, r, col)


def grass_tufts(c, seed, n, x_range, y_range, size, colour=GRASS_DARK):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x, y = rng.uniform(*x_range), rng.uniform(*y_range)
        tuft(c, x, y, size * rng.uniform(0.7, 1.2), colour)


def tuft(c, x, y, s, colour=GRASS_DARK):
    c.poly([(x - 0.5 * s, y), (x - 0.35 * s, y - 0.9 * s), (x - 0.1 * s, y)], colour)
    c.poly([(x - 0.2 * s, y), (x, y - 1.3 * s), (x + 0.2 * s, y)], colour)
    c.poly([(x + 0.1 * s, y), (x + 0.4 * s, y - 0.85 * s), (x + 0.5 * s, y)], colour)


def house(c, x, ground, w, h, wall=(250, 232, 200), roof=(206, 78, 64), lit=False):
    """A cottage whose wall spans x..x+w; the roof ridge reaches ground-h."""
    wall_top = ground - 0.58 * h
    win = (255, 214, 110) if lit else (170, 214, 236)
    c.rect(x + 0.66 * w, ground - 1.02 * h, x + 0.8 * w, ground - 0.7 * h, (170, 92, 74))
    c.rect(x + 0.64 * w, ground - 1.06 * h, x + 0.82 * w, ground - 0.99 * h, (150, 80, 64))
    c.rect(x, wall_top, x + w, ground, wall)
    c.rect(x + 0.72 * w, wall_top, x + w, ground, mix(wall, (170, 140, 120), 0.18))
    c.poly([(x - 0.1 * w, wall_top + 0.02 * h), (x + 0.5 * w, ground - h), (x + 1.1 * w, wall_top + 0.02 * h)], roof)
    c.poly([(x + 0.5 * w, ground - h), (x + 1.1 * w, wall_top + 0.02 * h), (x + 0.8 * w, wall_top + 0.02 * h)], mix(roof, (60, 20, 20), 0.2))
    # door
    dx0, dx1 = x + 0.4 * w, x + 0.6 * w
    c.rect(dx0, ground - 0.36 * h, dx1, ground, (150, 96, 62), r=0.1 * w)
    c.rect(dx0, ground - 0.28 * h, dx1, ground, (150, 96, 62))
    c.circle(dx1 - 0.04 * w, ground - 0.16 * h, 0.015 * w, (255, 206, 84))
    # windows
    for wx in (x + 0.12 * w, x + 0.72 * w):
        if lit:
            c.glow(wx + 0.08 * w, ground - 0.33 * h, 0.12 * w, (255, 220, 130), rings=3, alpha=30, spread=0.9)
        c.rect(wx - 0.015 * w, ground - 0.45 * h, wx + 0.175 * w, ground - 0.2 * h, (150, 96, 62), r=0.02 * w)
        c.rect(wx, ground - 0.435 * h, wx + 0.16 * w, ground - 0.215 * h, win)
        c.line([(wx + 0.08 * w, ground - 0.435 * h), (wx + 0.08 * w, ground - 0.215 * h)], (150, 96, 62), 0.015 * w, caps=False)
        c.line([(wx, ground - 0.325 * h), (wx + 0.16 * w, ground - 0.325 * h)], (150, 96, 62), 0.015 * w, caps=False)
        c.rect(wx - 0.03 * w, ground - 0.2 * h, wx + 0.19 * w, ground - 0.17 * h, (118, 160, 80), r=0.01 * w)
        for k in range(4):
            c.circle(wx + (0.02 + 0.05 * k) * w, ground - 0.205 * h, 0.022 * w, FLOWER_COLOURS[k % 2])
    # attic round window
    c.circle(x + 0.5 * w, ground - 0.72 * h, 0.07 * w, (150, 96, 62))
    c.circle(x + 0.5 * w, ground - 0.72 * h, 0.055 * w, win)


def river(c, left_edge, right_edge, stops):
    """A river between two polylines (top to bottom), with light ripples."""
    c.paint(stops, [left_edge + right_edge[::-1]])


def ripples(c, seed, n, region, colour=(255, 255, 255, 150), width=10):
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = region
    for _ in range(n):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        t = (y - y0) / max(1, y1 - y0)
        L = 40 + 110 * t
        c.line(ellipse_pts(x, y, L, 0.25 * L, start=200, end=340, n=16), colour, width * (0.5 + t), caps=False)


def boat(c, x, y, s, sail=(255, 250, 240)):
    """Mast and sails of a little boat; (x, y) is the waterline centre, s the half length.

    The hull is drawn separately (boat_hull) so that passengers sit between the two.
    """
    c.line([(x, y - 0.15 * s), (x, y - 1.9 * s)], (120, 80, 56), 0.06 * s)
    c.poly([(x + 0.04 * s, y - 1.85 * s), (x + 0.04 * s, y - 0.45 * s), (x + 0.85 * s, y - 0.45 * s)], sail)
    c.poly([(x - 0.04 * s, y - 1.6 * s), (x - 0.04 * s, y - 0.45 * s), (x - 0.6 * s, y - 0.45 * s)], mix(sail, (200, 180, 160), 0.25))
    c.poly([(x, y - 1.9 * s), (x + 0.3 * s, y - 1.8 * s), (x, y - 1.7 * s)], (255, 196, 64))


def boat_hull(c, x, y, s, hull=(214, 80, 62), stripe=(255, 236, 200)):
    """The hull in front of the passengers."""
    c.poly([(x - 1.0 * s, y - 0.35 * s), (x + 1.0 * s, y - 0.35 * s), (x + 0.75 * s, y + 0.12 * s), (x - 0.75 * s, y + 0.12 * s)], hull)
    c.poly([(x - 0.93 * s, y - 0.23 * s), (x + 0.93 * s, y - 0.23 * s), (x + 0.89 * s, y - 0.16 * s), (x - 0.89 * s, y - 0.16 * s)], stripe)


def moon(c, x, y, r):
    """A glowing crescent moon."""
    c.glow(x, y, r, (255, 246, 200), rings=4, alpha=18, spread=1.4)
    crescent = ellipse_pts(x, y, r, r)
    bite = ellipse_pts(x + 0.42 * r, y - 0.2 * r, 0.86 * r, 0.86 * r)
    c.paint((255, 240, 190), [crescent], cut=[bite])


def stars(c, seed, n, region, colour=(255, 244, 200), avoid=()):
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = region
    for _ in range(n):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if any(ax0 <= x <= ax1 and ay0 <= y <= ay1 for ax0, ay0, ax1, ay1 in avoid):
            continue
        r = rng.uniform(10, 30)
        if rng.random() < 0.35:
            c.poly(star_pts(x, y, r * 1.3, angle=-90 + rng.uniform(-15, 15)), colour)
        else:
            c.circle(x, y, r * 0.3, (*colour, 230))


def fireflies(c, seed, n, region):
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = region
    for _ in range(n):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        c.glow(x, y, 8, (255, 240, 120), rings=3, alpha=45, spread=2.5)
        c.circle(x, y, 8, (255, 248, 170))


def butterfly(c, x, y, s, colour=(255, 150, 190)):
    c.ellipse(x - 0.5 * s, y - 0.3 * s, 0.5 * s, 0.4 * s, colour)
    c.ellipse(x + 0.5 * s, y - 0.3 * s, 0.5 * s, 0.4 * s, colour)
    c.ellipse(x - 0.35 * s, y + 0.3 * s, 0.35 * s, 0.28 * s, mix(colour, WHITE, 0.3))
    c.ellipse(x + 0.35 * s, y + 0.3 * s, 0.35 * s, 0.28 * s, mix(colour, WHITE, 0.3))
    c.ellipse(x, y, 0.1 * s, 0.5 * s, INK)


def mushroom(c, x, ground, s):
    c.rect(x - 0.2 * s, ground - 0.6 * s, x + 0.2 * s, ground, CREAM, r=0.08 * s)
    c.paint((220, 70, 60), [ellipse_pts(x, ground - 0.6 * s, 0.6 * s, 0.5 * s, start=180, end=360)])
    for dx, dy in [(-0.3, -0.8), (0.1, -0.95), (0.35, -0.72)]:
        c.circle(x + dx * s, ground + dy * s, 0.08 * s, WHITE)


# --- friends ------------------------------------------------------------------


def eye(c, x, y, r):
    c.ellipse(x, y, r, r * 1.2, INK)
    c.circle(x - 0.3 * r, y - 0.45 * r, 0.38 * r, WHITE)


def fox(c, x, ground, s, facing=1):
    """A sitting fox about 2.6*s tall; facing=1 looks right, -1 left."""
    f = facing
    tail = ellipse_pts(x - f * 0.75 * s, ground - 0.55 * s, 0.75 * s, 0.32 * s, angle=-f * 35)
    c.paint(FOX_DARK, [tail])
    c.paint(WHITE, [tail], clip=[[(x - f * 1.05 * s, ground - 1.5 * s), (x - f * 2.0 * s, ground - 1.5 * s), (x - f * 2.0 * s, ground), (x - f * 1.05 * s, ground)]])
    c.ellipse(x, ground - 0.75 * s, 0.62 * s, 0.8 * s, FOX)
    c.ellipse(x + f * 0.12 * s, ground - 0.7 * s, 0.32 * s, 0.55 * s, CREAM)
    for dx in (-0.3, 0.3):
        c.ellipse(x + dx * s + f * 0.1 * s, ground - 0.08 * s, 0.2 * s, 0.12 * s, (70, 50, 40))
    hx, hy = x + f * 0.1 * s, ground - 1.75 * s
    for side in (-1, 1):
        ear = [(hx + side * 0.62 * s, hy - 0.25 * s), (hx + side * 0.52 * s, hy - 1.0 * s), (hx + side * 0.12 * s, hy - 0.45 * s)]
        c.poly(ear, FOX)
        inner = [(hx + side * 0.52 * s, hy - 0.33 * s), (hx + side * 0.5 * s, hy - 0.8 * s), (hx + side * 0.25 * s, hy - 0.45 * s)]
        c.poly(inner, (70, 50, 40))
    c.ellipse(hx, hy, 0.68 * s, 0.56 * s, FOX)
    c.poly([(hx - 0.7 * s, hy + 0.05 * s), (hx, hy + 0.55 * s), (hx + 0.7 * s, hy + 0.05 * s), (hx + 0.3 * s, hy + 0.2 * s), (hx, hy + 0.1 * s), (hx - 0.3 * s, hy + 0.2 * s)], CREAM)
    c.ellipse(hx + f * 0.05 * s, hy + 0.42 * s, 0.1 * s, 0.07 * s, INK)
    eye(c, hx - 0.26 * s + f * 0.06 * s, hy - 0.08 * s, 0.08 * s)
    eye(c, hx + 0.26 * s + f * 0.06 * s, hy - 0.08 * s, 0.08 * s)
    c.circle(hx - 0.42 * s, hy + 0.15 * s, 0.09 * s, (*PINK, 150))
    c.circle(hx + 0.42 * s, hy + 0.15 * s, 0.09 * s, (*PINK, 150))


def owl(c, x, y_feet, s):
    """A round owl about 2.2*s tall standing with its feet at y_feet."""
    cy = y_feet - 1.0 * s
    for side in (-1, 1):
        c.poly([(x + side * 0.75 * s, cy - 0.7 * s), (x + side * 0.72 * s, cy - 1.35 * s), (x + side * 0.3 * s, cy - 0.95 * s)], OWL_DARK)
    c.ellipse(x, cy, 0.82 * s, 1.0 * s, OWL)
    for side in (-1, 1):
        c.paint(OWL_DARK, [ellipse_pts(x + side * 0.72 * s, cy + 0.2 * s, 0.28 * s, 0.6 * s, angle=-side * 12)])
    c.ellipse(x, cy + 0.35 * s, 0.5 * s, 0.55 * s, OWL_BELLY)
    for row, k in [(0.15, 3), (0.42, 2), (0.65, 3)]:
        for j in range(k):
            bx = x + (j - (k - 1) / 2) * 0.24 * s
            c.line(ellipse_pts(bx, cy + row * s, 0.07 * s, 0.05 * s, start=20, end=160, n=10), OWL_DARK, 0.03 * s, caps=False)
    for side in (-1, 1):
        ex = x + side * 0.33 * s
        c.circle(ex, cy - 0.45 * s, 0.32 * s, OWL_BELLY)
        c.circle(ex, cy - 0.45 * s, 0.24 * s, WHITE)
        eye(c, ex + 0.03 * s, cy - 0.43 * s, 0.12 * s)
    c.poly([(x - 0.1 * s, cy - 0.25 * s), (x + 0.1 * s, cy - 0.25 * s), (x, cy - 0.05 * s)], ORANGE)
    for side in (-1, 1):
        for k in (-1, 0, 1):
            c.ellipse(x + side * 0.25 * s + k * 0.08 * s, y_feet - 0.02 * s, 0.05 * s, 0.08 * s, ORANGE)


def rabbit(c, x, ground, s, facing=1):
    """A sitting bunny about 2.4*s tall."""
    f = facing
    c.circle(x - f * 0.6 * s, ground - 0.45 * s, 0.22 * s, WHITE)
    c.ellipse(x, ground - 0.55 * s, 0.65 * s, 0.58 * s, BUNNY)
    c.ellipse(x + f * 0.35 * s, ground - 0.06 * s, 0.32 * s, 0.12 * s, BUNNY_SHADE)
    hx, hy = x + f * 0.3 * s, ground - 1.2 * s
    for side, ang in ((-1, -12), (1, 10)):
        ex = hx + side * 0.2 * s
        c.paint(BUNNY, [ellipse_pts(ex, hy - 0.85 * s, 0.17 * s, 0.55 * s, angle=ang)])
        c.paint(PINK, [ellipse_pts(ex, hy - 0.8 * s, 0.08 * s, 0.4 * s, angle=ang)])
    c.ellipse(hx, hy, 0.48 * s, 0.42 * s, BUNNY)
    eye(c, hx - 0.18 * s + f * 0.05 * s, hy - 0.05 * s, 0.065 * s)
    eye(c, hx + 0.18 * s + f * 0.05 * s, hy - 0.05 * s, 0.065 * s)
    c.poly([(hx - 0.06 * s + f * 0.04 * s, hy + 0.1 * s), (hx + 0.06 * s + f * 0.04 * s, hy + 0.1 * s), (hx + f * 0.04 * s, hy + 0.17 * s)], (226, 120, 130))
    c.circle(hx - 0.3 * s, hy + 0.12 * s, 0.07 * s, (*PINK, 160))
    c.circle(hx + 0.3 * s, hy + 0.12 * s, 0.07 * s, (*PINK, 160))


# --- the hero -----------------------------------------------------------------

ARM_POSES = {
    # (elbow, hand) offsets in units of d from the shoulder, for the image-right arm;
    # the image-left arm mirrors x.
    "down": ((0.35, 1.1), (0.45, 2.1)),
    "up": ((0.9, -0.9), (1.2, -1.95)),
    "reach": ((0.95, 0.55), (1.9, 0.55)),
    "hip": ((0.85, 0.7), (0.35, 1.45)),
}


def hero_arm(c, sx, sy, d, side, pose):
    (ex, ey), (hx, hy) = ARM_POSES[pose]
    elbow = (sx + side * ex * d, sy + ey * d)
    hand = (sx + side * hx * d, sy + hy * d)
    c.line([(sx, sy), elbow, hand], SKIN, 0.5 * d)
    sleeve_end = (sx + 0.55 * (elbow[0] - sx), sy + 0.55 * (elbow[1] - sy))
    c.line([(sx, sy), sleeve_end], SHIRT, 0.62 * d)
    c.circle(*hand, 0.3 * d, SKIN)


def hero(c, left_eye, right_eye, arms=("down", "down")):
    """The child: a faceless head oval (the photo face goes there) over a little body.

    `arms` gives the pose of the image-left and image-right arm.
    """
    lx, ey = left_eye
    rx, _ = right_eye
    d = rx - lx
    mx = (lx + rx) / 2

    def P(u, v):
        return (mx + u * d, ey + v * d)

    # legs, shoes
    for side in (-1, 1):
        c.rect(mx + side * 0.12 * d if side > 0 else mx - 1.1 * d, ey + 4.9 * d, mx + 1.1 * d if side > 0 else mx - 0.12 * d, ey + 6.55 * d, DUNGAREES, r=0.25 * d)
        c.ellipse(mx + side * 0.62 * d, ey + 6.7 * d, 0.62 * d, 0.3 * d, SHOE)
        c.rect(mx + side * 0.62 * d - 0.62 * d, ey + 6.82 * d, mx + side * 0.62 * d + 0.62 * d, ey + 6.98 * d, CREAM, r=0.08 * d)
    c.rect(*P(-1.2, 4.5), *P(1.2, 5.5), DUNGAREES, r=0.3 * d)
    # neck and shirt
    c.rect(*P(-0.42, 1.6), *P(0.42, 2.6), SKIN_SHADE)
    c.rect(*P(-1.25, 2.3), *P(1.25, 4.9), SHIRT, r=0.55 * d)
    c.paint(SHIRT_SHADE, [ellipse_pts(*P(0, 2.35), 0.55 * d, 0.3 * d, start=0, end=180)])
    # dungaree bib and straps
    c.rect(*P(-0.8, 3.55), *P(0.8, 5.0), DUNGAREES, r=0.12 * d)
    c.rect(*P(-0.4, 3.8), *P(0.4, 4.3), DUNGAREES_SHADE, r=0.08 * d)
    for side in (-1, 1):
        c.line([P(side * 0.65, 3.65), P(side * 0.85, 2.45)], DUNGAREES, 0.22 * d, caps=False)
        c.circle(*P(side * 0.62, 3.72), 0.09 * d, (255, 214, 80))
    # arms
    for side, pose in zip((-1, 1), arms):
        hero_arm(c, mx + side * 1.05 * d, ey + 2.75 * d, d, side, pose)
    # ears, head
    for side in (-1, 1):
        c.ellipse(*P(side * 1.3, 0.5), 0.26 * d, 0.34 * d, SKIN_SHADE)
    c.ellipse(*P(0, 0.3), 1.35 * d, 1.75 * d, SKIN)
    # hair cap: a big cap ellipse, cut off at ear level, minus a hairline ellipse
    # kept just outside the face ellipse (0, 0.35) +- (1.05, 1.40)
    cap = ellipse_pts(*P(0, -0.2), 1.52 * d, 1.58 * d)
    above = [P(-2, -2.5), P(2, -2.5), P(2, 0.6), P(-2, 0.6)]
    hairline = ellipse_pts(*P(0, 0.38), 1.19 * d, 1.5 * d)
    c.paint(HAIR, [cap], clip=[above], cut=[hairline])
    tuft = ellipse_pts(*P(0.25, -1.8), 0.35 * d, 0.14 * d, angle=-35)
    c.paint(HAIR, [tuft])
    shine = ellipse_pts(*P(-0.35, -1.32), 0.55 * d, 0.13 * d, angle=-12)
    c.paint(HAIR_LIGHT, [shine], cut=[hairline])


# --- pages --------------------------------------------------------------------


def eyes(mx, ey, d):
    """Face slot for eyes centred on mx at height ey, d px apart (ints)."""
    return (round(mx - d / 2), ey), (round(mx + d / 2), ey)


def page_01():
    """Cover: the hero between the three friends at the edge of the forest."""
    c = Canvas(DAY_SKY)
    cloud(c, 800, 660, 140)
    hills(c, 1500, 60, [(1400, 0.5, 1.0)], FAR_HILL)
    for i, x in enumerate(range(120, 2480, 170)):
        pine_tree(c, x, 1560 + 25 * math.sin(i * 1.7), 300 + 60 * ((i * 7) % 3), (106, 166, 120), (88, 146, 108))
    hills(c, 1700, 70, [(1800, 2.0, 1.0), (700, 1.0, 0.3)], [(0, GRASS_LIGHT), (1, GRASS)])
    round_tree(c, 170, 2000, 1500, fruit=(226, 70, 60))
    round_tree(c, 2330, 1980, 1450)
    c.poly([(2230, 1050), (2230, 1010), (1960, 1020), (1960, 1045)], TRUNK)
    owl(c, 2060, 1022, 110)
    hills(c, 2060, 60, [(2200, 4.0, 1.0)], [(0, GRASS), (1, GRASS_DARK)])
    flower_field(c, 11, 60, (0, W), (1900, 2450), (14, 30), avoid=[(1000, 1900, 1480, 2480)])
    l, r = eyes(1240, 1040, 200)
    hero(c, l, r, arms=("down", "up"))
    fox(c, 640, 2290, 190, facing=1)
    rabbit(c, 1850, 2290, 180, facing=-1)
    return c, (l, r)


def page_02():
    """The hero leaves the cottage and skips down the garden path."""
    c = Canvas(DAY_SKY)
    sun(c, 250, 800, 120)
    cloud(c, 1500, 720, 200)
    cloud(c, 2150, 820, 150)
    hills(c, 1430, 80, [(1600, 1.2, 1.0)], FAR_HILL)
    for i, x in enumerate(range(1500, 2600, 120)):
        pine_tree(c, x, 1500 + 20 * math.sin(i), 330 + 50 * (i % 3), (88, 150, 108), (72, 130, 96))
    hills(c, 1680, 50, [(2400, 0.3, 1.0)], [(0, GRASS_LIGHT), (1, GRASS)])
    house(c, 220, 1650, 720, 820)
    # picket fence
    for x0, x1 in ((0, 470), (700, 1150)):
        for x in range(x0, x1 - 30, 70):
            c.poly([(x, 1700), (x + 44, 1700), (x + 44, 1560), (x + 22, 1535), (x, 1560)], CREAM)
        c.rect(x0, 1590, x1 - 26, 1612, CREAM)
        c.rect(x0, 1650, x1 - 26, 1672, CREAM)
    # winding path from the door towards the forest and the viewer
    path_l = [(540, 1655), (560, 1800), (900, 1960), (1500, 2050), (1850, 2250), (1800, 2490)]
    path_r = [(620, 1655), (680, 1790), (1050, 1920), (1700, 1980), (2250, 2200), (2450, 2490)]
    c.paint((236, 214, 170), [path_l + path_r[::-1]])
    flower_field(c, 22, 70, (0, W), (1760, 2460), (14, 32), avoid=[(500, 1650, 2480, 2480)])
    flower_field(c, 23, 14, (0, 500), (1720, 2400), (18, 30))
    bush(c, 1050, 1720, 130, berries=(226, 70, 70))
    l, r = eyes(1870, 1120, 170)
    hero(c, l, r, arms=("down", "up"))
    butterfly(c, 1420, 1280, 50)
    return c, (l, r)


def page_03():
    """The hero meets Rusty the fox at the edge of the forest."""
    c = Canvas(DAY_SKY)
    cloud(c, 1250, 330, 170)
    cloud(c, 260, 420, 120)
    hills(c, 1200, 60, [(1500, 0.2, 1.0)], FAR_HILL)
    for i, x in enumerate(range(-40, 2600, 150)):
        pine_tree(c, x, 1330 + 30 * math.sin(i * 2.1), 520 + 80 * (i % 3), (96, 156, 112), (80, 138, 100))
    hills(c, 1450, 40, [(1900, 0.8, 1.0)], [(0, GRASS), (1, GRASS_DARK)])
    round_tree(c, 1280, 1560, 1200)
    round_tree(c, 2300, 1600, 1350)
    bush(c, 2120, 1700, 150, berries=(130, 70, 160))
    hills(c, 1820, 45, [(2600, 1.0, 1.0)], [(0, GRASS_LIGHT), (1, (196, 226, 140))])
    mushroom(c, 1300, 1900, 70)
    mushroom(c, 1390, 1920, 45)
    grass_tufts(c, 31, 30, (0, W), (1820, 1980), 50)
    l, r = eyes(760, 820, 176)
    hero(c, l, r, arms=("down", "reach"))
    fox(c, 1740, 1960, 270, facing=-1)
    butterfly(c, 1250, 1150, 45, colour=(255, 210, 80))
    return c, (l, r)


def page_04():
    """Hoot the owl on a branch of an old oak, deep in the forest."""
    c = Canvas([(0.0, (206, 232, 214)), (0.5, (226, 240, 216)), (1.0, (214, 232, 186))])
    for i, x in enumerate(range(-100, 2700, 260)):
        round_tree(c, x, 1900 + 40 * (i % 2), 1100 + 120 * (i % 3), leaf=(170, 210, 168), dark=(150, 196, 152), light=(190, 222, 180))
    for i, x in enumerate(range(40, 2700, 330)):
        pine_tree(c, x, 1990, 900 + 140 * (i % 2), (140, 190, 146), (126, 178, 136), trunk=(150, 130, 110))
    hills(c, 1960, 30, [(2200, 0.5, 1.0)], [(0, (150, 200, 110)), (0.25, (186, 220, 140)), (1, (200, 230, 156))])
    # the big oak: trunk with roots, a branch to the right, a hollow
    base = 2060
    c.poly([(480, base), (640, base - 120), (700, 1400), (650, 700), (1060, 700), (1010, 1400), (1090, base - 120), (1260, base)], TRUNK)
    c.poly([(900, base - 60), (930, 1400), (900, 700), (1060, 700), (1010, 1400), (1090, base - 120), (1260, base)], TRUNK_DARK)
    c.poly([(980, 1250), (1900, 1150), (2150, 1180), (1900, 1215), (1000, 1350)], TRUNK)
    c.ellipse(840, 1650, 100, 160, (84, 52, 36))
    c.paint(LEAF_DARK, [ellipse_pts(2150, 1180, 90, 40, angle=-20)])
    c.paint(LEAF, [ellipse_pts(2000, 1135, 80, 34, angle=-40)])
    for x, y, rr in [(420, 600, 360), (850, 520, 460), (1350, 620, 380), (180, 820, 300), (1250, 860, 260)]:
        c.circle(x + 20, y + 30, rr, LEAF_DARK)
        c.circle(x, y, rr * 0.94, LEAF)
        c.circle(x - 0.3 * rr, y - 0.3 * rr, rr * 0.35, LEAF_LIGHT)
    owl(c, 1650, 1175, 210)
    bush(c, 260, 2010, 170)
    bush(c, 2200, 2020, 200, berries=(226, 70, 70))
    mushroom(c, 1380, 2040, 80)
    mushroom(c, 1500, 2050, 55)
    grass_tufts(c, 41, 26, (0, W), (1975, 2030), 45, colour=(120, 176, 90))
    return c, None


def page_05():
    """Clover the rabbit hops among the flowers with the hero."""
    c = Canvas(DAY_SKY)
    cloud(c, 1990, 900, 190)
    cloud(c, 430, 900, 140)
    hills(c, 1350, 90, [(1300, 2.5, 1.0)], FAR_HILL)
    hills(c, 1550, 80, [(1700, 0.2, 1.0), (800, 1.3, 0.3)], [(0, GRASS_LIGHT), (1, GRASS)])
    round_tree(c, 400, 1560, 700, fruit=(226, 70, 60))
    round_tree(c, 2250, 1520, 620)
    hills(c, 1850, 40, [(2500, 1.5, 1.0)], [(0, GRASS), (1, GRASS_DARK)])
    flower_field(c, 51, 150, (0, W), (1550, 2470), (14, 36), avoid=[(1350, 1700, 2050, 2480)])
    l, r = eyes(1650, 1080, 190)
    hero(c, l, r, arms=("reach", "hip"))
    rabbit(c, 820, 2250, 250, facing=1)
    butterfly(c, 1100, 1350, 55)
    butterfly(c, 2250, 1750, 45, colour=(186, 140, 226))
    return c, (l, r)


def picnic_blanket(c, quad, n=8, a=(226, 82, 78), b=(255, 246, 236)):
    """A gingham blanket on a perspective quad (tl, tr, br, bl)."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad

    def at(u, v):
        top = (x0 + (x1 - x0) * u, y0 + (y1 - y0) * u)
        bot = (x3 + (x2 - x3) * u, y3 + (y2 - y3) * u)
        return (top[0] + (bot[0] - top[0]) * v, top[1] + (bot[1] - top[1]) * v)

    c.poly(quad, b)
    for i in range(n):
        for j in range(n):
            if (i + j) % 2 == 0:
                u0, u1, v0, v1 = i / n, (i + 1) / n, j / n, (j + 1) / n
                c.poly([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)], (*a, 200))
            elif i % 2 == 0:
                u0, u1, v0, v1 = i / n, (i + 1) / n, j / n, (j + 1) / n
                c.poly([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)], (*a, 90))


def page_06():
    """A picnic with the fox, the owl and the rabbit."""
    c = Canvas(DAY_SKY)
    sun(c, 2170, 810, 105)
    cloud(c, 560, 760, 190)
    hills(c, 1280, 70, [(1500, 1.0, 1.0)], FAR_HILL)
    for i, x in enumerate(range(-60, 2600, 140)):
        round_tree(c, x, 1400 + 20 * (i % 2), 380 + 60 * (i % 3), leaf=(110, 176, 100), dark=(90, 150, 86), light=(150, 206, 120))
    hills(c, 1460, 40, [(2300, 0.5, 1.0)], [(0, GRASS_LIGHT), (1, GRASS)])
    grass_tufts(c, 61, 25, (0, W), (1500, 1980), 45)
    l, r = eyes(1240, 1180, 160)
    hero(c, l, r, arms=("up", "up"))
    picnic_blanket(c, [(500, 2020), (1980, 2020), (2300, 2440), (180, 2440)])
    # basket
    c.line(ellipse_pts(1240, 2100, 170, 150, start=180, end=360, n=40), (150, 96, 52), 30, caps=False)
    c.rect(1050, 2090, 1430, 2280, (196, 140, 80), r=30)
    for y in range(2120, 2280, 40):
        c.line([(1060, y), (1420, y)], (170, 116, 62), 10, caps=False)
    c.rect(1030, 2070, 1450, 2120, (170, 116, 62), r=20)
    # plates of food
    for x, y in [(720, 2330), (1780, 2330)]:
        c.ellipse(x, y, 130, 50, WHITE)
        c.ellipse(x, y, 100, 36, (236, 236, 230))
    c.circle(690, 2300, 45, (220, 60, 60))
    c.circle(760, 2305, 40, (120, 190, 70))
    c.line([(690, 2258), (700, 2240)], TRUNK_DARK, 8, caps=False)
    c.poly([(1720, 2330), (1850, 2330), (1780, 2260)], (250, 220, 160))
    c.poly([(1735, 2318), (1835, 2318), (1780, 2275)], (240, 180, 90))
    for k, x in enumerate(range(1110, 1400, 70)):
        c.circle(x, 2040 - 10 * (k % 2), 30, [(226, 60, 70), (130, 70, 170), (255, 196, 64)][k % 3])
    fox(c, 420, 2200, 200, facing=1)
    rabbit(c, 2080, 2230, 190, facing=-1)
    owl(c, 1580, 2110, 120)
    return c, (l, r)


def page_07():
    """The friends sail a little boat down the sparkling river."""
    c = Canvas(DAY_SKY)
    cloud(c, 520, 760, 180)
    cloud(c, 1950, 680, 220)
    hills(c, 1250, 80, [(1300, 0.4, 1.0)], FAR_HILL)
    for i, x in enumerate(range(-20, 2600, 130)):
        pine_tree(c, x, 1320 + 25 * math.sin(i * 1.3), 330 + 70 * (i % 3), (100, 160, 116), (84, 142, 104))
    hills(c, 1400, 30, [(2000, 1.0, 1.0)], [(0, GRASS_LIGHT), (1, GRASS)])
    left = [(1140, 1400), (1000, 1600), (700, 1900), (520, 2200), (300, 2490)]
    right = [(1300, 1400), (1480, 1600), (1780, 1900), (2100, 2200), (2450, 2490)]
    river(c, left, right, [(0, (150, 210, 236)), (1, (70, 150, 206))])
    ripples(c, 71, 40, (700, 1500, 1900, 2460))
    boat(c, 1330, 2060, 330)
    owl(c, 1410, 1960, 85)
    fox(c, 1200, 2000, 150, facing=1)
    rabbit(c, 1600, 2010, 120, facing=-1)
    boat_hull(c, 1330, 2060, 330)
    reeds = [(360, 1950), (430, 2000), (2010, 2020), (2090, 1980), (2150, 2050)]
    for x, y in reeds:
        c.line([(x, y), (x + 10, y - 260)], GRASS_DARK, 14, caps=False)
        c.ellipse(x + 10, y - 250, 18, 60, (130, 86, 56))
    round_tree(c, 250, 1800, 700)
    round_tree(c, 2250, 1760, 650, fruit=(226, 70, 60))
    flower_field(c, 72, 40, (0, 600), (1900, 2460), (16, 30))
    flower_field(c, 73, 40, (1950, 2480), (1950, 2460), (16, 30))
    return c, None


def page_08():
    """Wordless spread: the friends walk home over the hill as the sun sets."""
    c = Canvas([(0.0, (112, 96, 170)), (0.35, (236, 132, 140)), (0.6, (255, 196, 130)), (1.0, (255, 220, 160))])
    c.glow(1240, 1560, 300, (255, 232, 170), rings=5, alpha=26, spread=1.5)
    c.circle(1240, 1560, 300, (255, 214, 120))
    cloud(c, 480, 640, 230, colour=(250, 186, 176), shade=(218, 150, 160))
    cloud(c, 1960, 860, 170, colour=(255, 204, 170), shade=(232, 164, 150))
    for k in range(4):
        x, y = 1550 + 110 * k, 420 + 40 * (k % 2)
        c.line(ellipse_pts(x - 22, y, 24, 14, start=200, end=340, n=8) + ellipse_pts(x + 22, y, 24, 14, start=200, end=340, n=8), (110, 70, 110), 8, caps=False)
    hills(c, 1560, 70, [(1500, 0.9, 1.0)], (206, 132, 150))
    hills(c, 1700, 60, [(2200, 2.4, 1.0)], (170, 108, 140))
    for i, x in enumerate(range(1900, 2600, 110)):
        pine_tree(c, x, 1760 + 30 * (i % 2), 300 + 60 * (i % 3), (140, 90, 128), (128, 82, 120), trunk=(128, 82, 120))
    sil = (74, 46, 84)
    crest = [(3600, -0.6, 1.0)]
    hills(c, 1900, 150, crest, sil)
    s8 = Silhouette(c, sil)
    fox(s8, 960, wave_y(960, 1900, 150, crest) + 10, 140, facing=1)
    owl(s8, 1250, wave_y(1250, 1900, 150, crest) + 8, 105)
    rabbit(s8, 1530, wave_y(1530, 1900, 150, crest) + 8, 125, facing=1)
    round_tree(s8, 260, wave_y(260, 1900, 150, crest) + 60, 1000)
    for x in range(470, 2400, 170):
        if not 800 < x < 1700:
            tuft(s8, x, wave_y(x, 1900, 150, crest) + 6, 40 + 8 * (x % 3))
    for x in (2000, 2150):
        flower(s8, x, wave_y(x, 1900, 150, crest) - 60, 22, WHITE)
    return c, None


NIGHT_SKY = [(0.0, (22, 30, 74)), (0.55, (44, 58, 120)), (1.0, (78, 92, 150))]


def page_09():
    """Night: the moon and the stars come out over the forest."""
    c = Canvas(NIGHT_SKY)
    stars(c, 91, 120, (0, 620, W, 1500), avoid=[(1700, 650, 2200, 1150)])
    moon(c, 1950, 900, 160)
    hills(c, 1500, 80, [(1400, 0.8, 1.0)], (52, 64, 120))
    for i, x in enumerate(range(-40, 2600, 130)):
        pine_tree(c, x, 1560 + 25 * math.sin(i * 2.3), 360 + 70 * (i % 3), (38, 52, 96), (30, 42, 84), trunk=(30, 36, 70))
    hills(c, 1800, 70, [(2100, 2.0, 1.0)], [(0, (46, 84, 96)), (1, (30, 60, 74))])
    # a branch from the left with the owl on it
    c.poly([(-20, 1180), (900, 1100), (1020, 1120), (900, 1150), (-20, 1290)], (66, 50, 56))
    c.paint((40, 74, 70), [ellipse_pts(1000, 1095, 90, 36, angle=-20)])
    owl(c, 640, 1130, 190)
    for x, y, rx in [(1350, 2150, 200), (1880, 2180, 150)]:
        c.ellipse(x, y, rx, 40, (30, 60, 74))
    fox(c, 1380, 2150, 190, facing=1)
    rabbit(c, 1900, 2180, 170, facing=-1)
    mushroom(c, 420, 2200, 80)
    mushroom(c, 530, 2230, 55)
    fireflies(c, 92, 28, (100, 1400, 2400, 2400))
    return c, None


def page_10():
    """Home again at twilight: the hero waves goodnight."""
    c = Canvas([(0.0, (34, 44, 100)), (0.45, (90, 96, 160)), (0.8, (236, 170, 150)), (1.0, (250, 206, 160))])
    stars(c, 101, 70, (0, 560, W, 1150), avoid=[(200, 500, 700, 1000), (700, 540, 1800, 800)])
    moon(c, 420, 760, 120)
    hills(c, 1600, 60, [(1600, 2.5, 1.0)], (120, 110, 160))
    hills(c, 1800, 40, [(2400, 0.9, 1.0)], [(0, (104, 150, 104)), (1, (84, 128, 90))])
    house(c, 1540, 1820, 760, 860, lit=True)
    c.paint((226, 196, 150), [[(1800, 1820), (1960, 1820), (2300, 2490), (1500, 2490)]])
    round_tree(c, 1300, 1860, 700, leaf=(70, 126, 84), dark=(54, 104, 72), light=(92, 150, 100))
    fireflies(c, 102, 14, (100, 1300, 2400, 1900))
    l, r = eyes(760, 1320, 240)
    hero(c, l, r, arms=("down", "up"))
    fox(c, 1600, 2380, 150, facing=-1)
    rabbit(c, 2260, 2400, 130, facing=-1)
    owl(c, 2095, 905, 75)
    return c, (l, r)


PAGES = [page_01, page_02, page_03, page_04, page_05, page_06, page_07, page_08, page_09, page_10]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for 01.png ... 10.png")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    slots = {}
    for num, make in enumerate(PAGES, start=1):
        canvas, slot = make()
        canvas.finish().save(args.out / f"{num:02d}.png", optimize=True)
        if slot:
            slots[num] = slot
    print(f"# {len(PAGES)} pages in {args.out} ({time.perf_counter() - t0:.1f} s)")
    print("# face slots (output px), per page:")
    for num, ((lx, ly), (rx, ry)) in slots.items():
        print(f"{num}: {{left_eye: [{lx}, {ly}], right_eye: [{rx}, {ry}]}}  # d = {rx - lx}")


if __name__ == "__main__":
    main()
