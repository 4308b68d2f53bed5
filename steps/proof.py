"""``bookjob proof BOOK``: check a book's texts for every child it may be made for, without a photo.

For every language of the book, each gender, an age of each plural category that ages 0-17
fall into, names of 1, 12 and 40 letters in the script of each of the book's languages, and
no dedication or one of 300 characters, every text layer is filled and laid out by the same
typesetter the render step uses. One line per problem, naming page, layer and case:

- a message that is not valid (all of them, not only the first as loading a job does);
- characters that neither the layer's font nor the book's fallback fonts can draw;
- a text that does not fit its box even at the smallest size shrink-to-fit may use.

A contact sheet (PDF) shows every page with its text over the base illustration, for a few
of those cases per language. Exit 0 when clean, 3 when a problem was found.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

from steps import protocol
from steps.core import glyphs, messages
from steps.core.errors import InputError
from steps.core.manifest import LoadedBook, load_book

NAME_LENGTHS = (1, 12, 40)
THUMB = 600          # contact-sheet thumbnail side, px
COLUMNS = 5


@dataclass(frozen=True)
class Case:
    """One child the book may be made for."""

    language: str
    gender: str
    age: int
    category: str
    name: str
    name_label: str          # "12 Cyrl letters"
    dedication: str
    dedication_label: str    # "no dedication" | "dedication of 300 Latn characters"

    @property
    def child(self) -> messages.Child:
        return messages.Child(self.name, self.age, self.gender, self.dedication)

    def describe(self, used: frozenset[str]) -> str:
        """The case in the words of the variables a message uses."""
        parts = [self.language]
        if "child_gender" in used:
            parts.append(self.gender)
        if "child_age" in used:
            parts.append(f"age {self.age} ({self.category})")
        if "child_name" in used:
            parts.append(f"name of {self.name_label}")
        if "dedication" in used:
            parts.append(self.dedication_label)
        return ", ".join(parts)

    def key(self, used: frozenset[str]) -> tuple:
        values = {"child_gender": self.gender, "child_age": self.age, "child_name": self.name,
                  "dedication": self.dedication}
        return (self.language,) + tuple(values[v] for v in sorted(used))


def sample_names(languages: list[str]) -> dict[str, dict[int, str]]:
    """Names of 1, 12 and 40 letters for each script of the languages: its letters in turn."""
    names: dict[str, dict[int, str]] = {}
    for language in languages:
        script = messages.script_of(language)
        letters = messages.letters_of(language)
        if script in names or not letters:
            continue
        run = (letters * (40 // len(letters) + 1))
        names[script] = {n: (run[:n]).capitalize() for n in NAME_LENGTHS}
    return names


def sample_dedication(letters: str, size: int = messages.MAX_DEDICATION) -> str:
    """A dedication of ``size`` characters: words of the script's letters, one line break."""
    words, i = [], 0
    while sum(len(w) + 1 for w in words) < size:
        words.append(letters[i % len(letters):][:7] or letters[:7])
        i += 7
    text = " ".join(words)[:size]
    middle = text.rfind(" ", 0, size // 2)
    return text[:middle] + "\n" + text[middle + 1:] if middle > 0 else text


def cases(languages: list[str]) -> list[Case]:
    names = sample_names(languages)
    dedications = [("", "no dedication")]
    for language in languages:
        script = messages.script_of(language)
        if not any(script in label for _, label in dedications):
            dedications.append((sample_dedication(messages.letters_of(language)),
                                f"dedication of 300 {script} characters"))
    out = []
    for language in languages:
        for gender in ("girl", "boy", "unspecified"):
            for category, ages in messages.age_categories(language).items():
                for script, by_length in names.items():
                    for length, name in by_length.items():
                        for dedication, label in dedications:
                            out.append(Case(language, gender, max(ages), category, name,
                                            f"{length} {script} letters", dedication, label))
    return out


class Proof:
    """The checks of one book; ``problems`` holds one line per problem."""

    def __init__(self, loaded: LoadedBook) -> None:
        self.loaded = loaded
        self.book = loaded.book
        self.problems: list[str] = []
        self.cases = cases(self.book.languages)
        self.faces = glyphs.read_faces(loaded)
        bad = self.book.message_problems()
        self.problems += [f"{where}: {problem}" for where, problem in bad]
        self.broken = {where for where, _ in bad}

    def valid(self, num: int, i: int, language: str) -> bool:
        where = f"page {num}, text layer {i}"
        return where not in self.broken and f"{where} ({language})" not in self.broken

    def layers(self):
        """(page, layer number, layer, language, message, variables) of every valid message."""
        for page in self.book.pages:
            for i, layer in enumerate(page.text_layers, 1):
                for language in self.book.languages:
                    if not self.valid(page.num, i, language):
                        continue
                    message = layer.message(language)
                    yield page, i, layer, language, message, messages.variables(message)

    def variants(self) -> dict[int, list]:
        """Per page: (layer number, layer, case description, text), each text once."""
        out: dict[int, list] = {}
        for page, i, layer, language, message, used in self.layers():
            seen = set()
            for case in self.cases:
                if case.language != language or case.key(used) in seen:
                    continue
                seen.add(case.key(used))
                text = messages.fill(message, language, case.child)
                out.setdefault(page.num, []).append((i, layer, case.describe(used), text))
        return out

    def check_glyphs(self, variants: dict[int, list]) -> None:
        """Characters no font of a layer's chain has: in the filled texts, and among the
        letters (both cases) of every script a name or dedication may be written in."""
        scripts = {messages.script_of(lang): messages.letters_of(lang) for lang in self.book.languages}
        for page, i, layer, language, _message, used in self.layers():
            if not used & {"child_name", "dedication"}:
                continue
            chain = glyphs.chain_for(self.book, layer, self.faces)
            for script, letters in scripts.items():
                lacking = glyphs.missing(letters + letters.upper(), chain)
                if lacking:
                    self.problems.append(
                        f"page {page.num}, text layer {i} ({language}, names in {script}): font "
                        f"{glyphs.chain_name(chain)} cannot draw {glyphs.describe(lacking)}")
        # The rest: characters of the messages themselves (the sample names and dedications
        # are made of the letters checked above), once per layer and language.
        reported = set()
        sample_letters = set("".join(scripts.values()).upper() + "".join(scripts.values()))
        for num, items in variants.items():
            for i, layer, described, text in items:
                language = described.split(",")[0]
                own = set(layer.message(language))
                chain = glyphs.chain_for(self.book, layer, self.faces)
                lacking = [c for c in glyphs.missing(text, chain)
                           if c in own or c not in sample_letters]
                if lacking and (num, i, language) not in reported:
                    reported.add((num, i, language))
                    self.problems.append(
                        f"page {num}, text layer {i} ({language}): font "
                        f"{glyphs.chain_name(chain)} cannot draw {glyphs.describe(lacking)}")

    def check_fit(self, renderer, variants: dict[int, list]) -> None:
        """A block overflows when it does not fit at its smallest size: shrink-to-fit then
        returns that floor, and a probe set at the floor (rounded up to whole px) is not kept
        at its own size."""
        from steps.render import block_for

        for num, items in sorted(variants.items()):
            drawn = [(i, d, block_for(self.book, layer, text)) for i, layer, d, text in items
                     if text.strip()]
            if not drawn:
                continue
            sizes = renderer.fit([b for _, _, b in drawn])
            floored = [(i, d, b) for (i, d, b), s in zip(drawn, sizes)
                       if s <= b.min_font_size + 1e-6 and b.min_font_size < b.font_size_px]
            if not floored:
                continue
            probes = [replace(b, font_size_px=math.ceil(b.min_font_size)) for _, _, b in floored]
            for (i, d, b), probe, size in zip(floored, probes, renderer.fit(probes)):
                if size < probe.font_size_px:
                    self.problems.append(f"page {num}, text layer {i} ({d}): the text does not "
                                         f"fit its box {list(b.box)} even at the smallest size, "
                                         f"{b.min_font_size:g} px")

    def sheet_cases(self) -> list[Case]:
        """Per language: the 1-, 12- and 40-letter names in its own script, genders and age
        categories in turn, the longest name with the longest dedication."""
        chosen = []
        for language in self.book.languages:
            script = messages.script_of(language)
            own = [c for c in self.cases if c.language == language
                   and c.name_label.endswith(f"{script} letters")]
            categories = list(messages.age_categories(language))
            for k, length in enumerate(NAME_LENGTHS):
                gender = ("girl", "boy", "unspecified")[k % 3]
                category = categories[k % len(categories)]
                want_dedication = length == NAME_LENGTHS[-1]
                chosen += [c for c in own if c.name_label.startswith(f"{length} ")
                           and c.gender == gender and c.category == category
                           and bool(c.dedication) == want_dedication
                           and (not want_dedication or script in c.dedication_label)][:1]
        return chosen

    def contact_sheet(self, renderer, path: Path) -> int:
        """One PDF page per chosen case: every book page as a thumbnail with its text."""
        from PIL import Image, ImageDraw, ImageFont

        from steps.render import block_for

        width, height = self.book.output.page_size_px
        scale = THUMB / max(width, height)
        tw, th = round(width * scale), round(height * scale)
        thumbs = {}
        for page in self.book.pages:
            with Image.open(BytesIO(self.loaded.read(page.base))) as im:
                im.draft("RGB", (tw, th))  # JPEG bases decode at a fraction of their size
                thumbs[page.num] = im.convert("RGB").resize((tw, th), Image.Resampling.LANCZOS)
        rows = math.ceil(len(self.book.pages) / COLUMNS)
        font = ImageFont.load_default(size=28)
        sheets = []
        for case in self.sheet_cases():
            sheet = Image.new("RGB", (COLUMNS * (tw + 20) + 20, rows * (th + 60) + 80), "white")
            draw = ImageDraw.Draw(sheet)
            label = case.describe(frozenset(messages.VARIABLES))
            draw.text((20, 20), f"{self.book.id}: {label}", fill="black", font=font)
            for k, page in enumerate(self.book.pages):
                thumb = thumbs[page.num].copy()
                texts = [(layer, messages.fill(layer.message(case.language), case.language,
                                               case.child))
                         for i, layer in enumerate(page.text_layers, 1)
                         if self.valid(page.num, i, case.language)]  # broken ones: left out
                blocks = [block_for(self.book, layer, text) for layer, text in texts if text.strip()]
                drawn = renderer.text_layer(blocks, (width, height)) if blocks else None
                if drawn is not None:  # the text laid out at full size, then scaled down
                    (x0, y0, x1, y1), pixels = drawn
                    layer = Image.fromarray(pixels, "RGBA")
                    small = layer.resize((max(1, round((x1 - x0) * scale)),
                                          max(1, round((y1 - y0) * scale))), Image.Resampling.BOX)
                    thumb.paste(small, (round(x0 * scale), round(y0 * scale)), small)
                x, y = 20 + (k % COLUMNS) * (tw + 20), 80 + (k // COLUMNS) * (th + 60)
                sheet.paste(thumb, (x, y))
                draw.text((x, y + th + 8), f"page {page.num}", fill="black", font=font)
            sheets.append(sheet)
        path.parent.mkdir(parents=True, exist_ok=True)
        sheets[0].save(path, "PDF", resolution=100.0, save_all=True, append_images=sheets[1:])
        return len(sheets)

    def run(self, sheet: Path | None) -> int:
        from steps.backends.typesetter import FontLoadError, TextRenderer
        from steps.render import book_fonts

        variants = self.variants()
        self.check_glyphs(variants)
        try:
            with TextRenderer(book_fonts(self.loaded)) as renderer:
                self.check_fit(renderer, variants)
                return self.contact_sheet(renderer, sheet) if sheet else 0
        except FontLoadError as e:
            raise InputError("bad_font", f"{str(e).rstrip('.')}; replace the font files with "
                                         "working TTF, OTF, WOFF or WOFF2 files.") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bookjob proof", description=__doc__.splitlines()[0])
    p.add_argument("book")
    p.add_argument("--sheet", default="", help="write the contact sheet (PDF) here")
    args = p.parse_args(argv)
    try:
        loaded = load_book(args.book, check_messages=False)
        proof = Proof(loaded)
        pages = proof.run(Path(args.sheet) if args.sheet else None)
    except InputError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return protocol.EXIT_INPUT
    for line in sorted(proof.problems, key=lambda line: int(line.split(",")[0].split()[1])):
        print(line)
    print(f"proof of {loaded.book.id}: {len(proof.cases)} cases in "
          f"{', '.join(loaded.book.languages)}, {len(proof.problems)} problem(s)"
          + (f"; contact sheet {args.sheet} ({pages} pages)" if args.sheet else ""), file=sys.stderr)
    return protocol.EXIT_INPUT if proof.problems else 0


if __name__ == "__main__":
    sys.exit(main())
