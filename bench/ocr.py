"""OCR engines on rendered test images: character error rate and seconds per page, same run.

Renders a small set of images with Pillow and the fonts in /usr/share/fonts (several faces and
sizes, a scanned-looking page with noise, blur and a slight rotation, a bar chart with labels, a
dark code screenshot), reads each with rapidocr (through Corral's own engine, ``corral.ingestion.
parsing.ocr``) and with Tesseract (the ``tesseract`` command, when installed: ``apt-get install
tesseract-ocr tesseract-ocr-eng``; skipped and said so otherwise), and prints per image and overall:

* CER: Levenshtein distance between the recognised text and the rendered text, over the rendered
  text's length, after collapsing whitespace (line breaks and spacing are not what is measured);
* seconds per page (each engine warmed up first; its load time printed apart).

Usage: ``.venv/bin/python bench/ocr.py [--out DIR]`` (DIR keeps the rendered PNGs).
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")
PROSE = [
    "The quarterly report shows revenue growth of 12 percent in Europe.",
    "Shipping delays fell after the warehouse moved to Rotterdam in March.",
    "Customer support answered 4,380 tickets with a median wait of 6 minutes.",
    "The board approved a budget of 2.5 million for the new data centre.",
    "Battery life improved from 9 to 14 hours on the second prototype.",
    "All invoices must be filed before the 15th of each month.",
]
CODE = [
    "def load_config(path: str) -> dict:",
    "    with open(path) as handle:",
    "        data = json.load(handle)",
    "    if 'version' not in data:",
    "        raise ValueError('missing version')",
    "    return data",
    "",
    "for item in range(10):",
    "    print(item * 2, load_config('app.json'))",
]


@dataclass
class Sample:
    name: str
    image: Image.Image
    truth: str


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONTS / name
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size)


def _text_image(lines: list[str], font_name: str, size: int, width: int = 900,
                fg: str = "black", bg: str = "white") -> Image.Image:
    font = _font(font_name, size)
    step = int(size * 1.6)
    image = Image.new("RGB", (width, step * len(lines) + 2 * size), bg)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size + i * step), line, fill=fg, font=font)
    return image


def _scan() -> Sample:
    """An A4 page at 150 dpi: paragraphs of serif text, grey paper noise, blur, rotated 1.5 deg."""
    rng = random.Random(7)
    lines = [PROSE[i % len(PROSE)] for i in range(18)]
    page = Image.new("L", (1240, 1754), 245)
    draw = ImageDraw.Draw(page)
    font = _font("DejaVuSerif.ttf", 22)
    y = 120
    for i, line in enumerate(lines):
        draw.text((110, y), line, fill=20, font=font)
        y += 44 if i % 6 != 5 else 80
    noise = Image.effect_noise(page.size, 18)
    page = Image.blend(page, noise, 0.12)
    for _ in range(400):  # specks
        x, yy = rng.randrange(page.width), rng.randrange(page.height)
        draw = ImageDraw.Draw(page)
        draw.point((x, yy), fill=rng.randrange(0, 120))
    page = page.filter(ImageFilter.GaussianBlur(0.7)).rotate(1.5, expand=False, fillcolor=245)
    return Sample("scanned page (serif 22px, noise, 1.5 deg)", page.convert("RGB"), "\n".join(lines))


def _chart() -> Sample:
    """A bar chart: a title, a value over each bar, a label under it, an axis caption."""
    image = Image.new("RGB", (900, 560), "white")
    draw = ImageDraw.Draw(image)
    title = "Monthly active users by region"
    regions = ["North", "South", "East", "West", "Central"]
    values = [420, 310, 515, 280, 390]
    draw.text((200, 20), title, fill="black", font=_font("DejaVuSans-Bold.ttf", 28))
    font = _font("DejaVuSans.ttf", 20)
    draw.line((80, 460, 860, 460), fill="black", width=2)
    draw.line((80, 80, 80, 460), fill="black", width=2)
    for i, (region, value) in enumerate(zip(regions, values, strict=True)):
        x = 120 + i * 150
        top = 460 - int(value * 0.6)
        draw.rectangle((x, top, x + 90, 460), fill=(70, 110, 180))
        draw.text((x + 20, 62), str(value), fill="black", font=font)  # values in a row on top
        draw.text((x + 10, 470), region, fill="black", font=font)
    caption = "Source: product analytics, October"
    draw.text((260, 515), caption, fill=(60, 60, 60), font=_font("DejaVuSans-Oblique.ttf", 18))
    truth = "\n".join([title, " ".join(map(str, values)), " ".join(regions), caption])
    return Sample("bar chart with labels", image, truth)


def _small_chart() -> Sample:
    """A small bar chart (700 px): each value just over its bar, quarter labels under them."""
    image = Image.new("RGB", (700, 420), "white")
    draw = ImageDraw.Draw(image)
    font = _font("DejaVuSans.ttf", 22)
    title = "Tickets closed per quarter"
    draw.text((30, 20), title, fill="black", font=font)
    bars = [("Q1", 120), ("Q2", 180), ("Q3", 95), ("Q4", 210)]
    for i, (label, value) in enumerate(bars):
        x = 80 + i * 150
        draw.rectangle((x, 380 - value, x + 80, 380), fill=(70, 110, 200))
        draw.text((x + 20, 385), label, fill="black", font=font)
        draw.text((x + 15, 350 - value), str(value), fill="black", font=font)
    truth = "\n".join([title, "210", "180", "120", "95", " ".join(q for q, _ in bars)])
    return Sample("small bar chart, values over the bars", image, truth)


def _hard_scan() -> Sample:
    """A worse scan: 3 deg, heavier noise and blur, saved as a JPEG at quality 30."""
    lines = PROSE[:5]
    page = Image.new("L", (1100, 420), 235)
    draw = ImageDraw.Draw(page)
    font = _font("DejaVuSerif.ttf", 20)
    for i, line in enumerate(lines):
        draw.text((60, 40 + i * 70), line, fill=40, font=font)
    page = Image.blend(page, Image.effect_noise(page.size, 40), 0.25)
    page = page.filter(ImageFilter.GaussianBlur(1.0)).rotate(3, expand=False, fillcolor=235)
    buf = io.BytesIO()
    page.save(buf, format="JPEG", quality=30)
    return Sample("bad scan (3 deg, noise, blur, JPEG q30)", Image.open(buf).convert("RGB"),
                  "\n".join(lines))


def _low_contrast() -> Sample:
    """Grey text on a light colour gradient, as in a slide or a banner."""
    lines = PROSE[3:6]
    image = Image.new("RGB", (1000, 200))
    draw = ImageDraw.Draw(image)
    for x in range(image.width):
        shade = 200 + int(40 * x / image.width)
        draw.line((x, 0, x, image.height), fill=(shade, shade - 20, 255 - shade // 4))
    font = _font("DejaVuSans.ttf", 18)
    for i, line in enumerate(lines):
        draw.text((30, 30 + i * 50), line, fill=(120, 120, 130), font=font)
    return Sample("low contrast on a gradient (sans 18px)", image, "\n".join(lines))


def samples() -> list[Sample]:
    out = [
        Sample("DejaVu Sans 14px", _text_image(PROSE, "DejaVuSans.ttf", 14), "\n".join(PROSE)),
        Sample("DejaVu Serif 20px", _text_image(PROSE, "DejaVuSerif.ttf", 20, 1000), "\n".join(PROSE)),
        Sample("DejaVu Sans Condensed 12px", _text_image(PROSE[:4], "DejaVuSansCondensed.ttf", 12, 700),
               "\n".join(PROSE[:4])),
        Sample("DejaVu Sans Bold 32px", _text_image(PROSE[:2], "DejaVuSans-Bold.ttf", 32, 1500),
               "\n".join(PROSE[:2])),
        Sample("DejaVu Serif Italic 18px", _text_image(PROSE[2:5], "DejaVuSerif-Italic.ttf", 18, 1000),
               "\n".join(PROSE[2:5])),
        Sample("DejaVu Sans 10px", _text_image(PROSE[:3], "DejaVuSans.ttf", 10, 500), "\n".join(PROSE[:3])),
        _scan(),
        _hard_scan(),
        _low_contrast(),
        _chart(),
        _small_chart(),
        Sample("code screenshot (dark, mono 16px)",
               _text_image(CODE, "DejaVuSansMono.ttf", 16, 700, fg=(220, 220, 200), bg=(30, 30, 36)),
               "\n".join(line for line in CODE if line)),
    ]
    return out


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), one row at a time."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(found: str, truth: str) -> float:
    f, t = " ".join(found.split()), " ".join(truth.split())
    return levenshtein(f, t) / max(len(t), 1)


def rapidocr_reader(upscale: bool = True) -> Callable[[Image.Image, Path], str]:
    from corral.ingestion.parsing.figures import layout
    from corral.ingestion.parsing.ocr import RapidOcrEngine

    engine = RapidOcrEngine(upscale=upscale)

    def read(image: Image.Image, path: Path) -> str:
        return "\n".join(text for text, _ in layout(engine.read_image(image)))

    return read


def tesseract_reader() -> Callable[[Image.Image, Path], str] | None:
    exe = shutil.which("tesseract")
    if exe is None:
        return None

    def read(image: Image.Image, path: Path) -> str:
        done = subprocess.run([exe, str(path), "-", "--psm", "3", "-l", "eng"], capture_output=True,
                              text=True, check=True, timeout=300)
        return done.stdout

    return read


def cpu() -> str:
    """The host as RESULTS.md records it: the CPU's model name and the engine's reading of its ISA."""
    import os

    from corral.inference.engine.cpu import cpu_features

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                 "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, {cpu_features().describe()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the rendered PNGs here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ocr-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    cases = samples()
    for i, case in enumerate(cases):
        case.image.save(out / f"{i}.png")
    print(f"host: {cpu()}")
    engines: dict[str, Callable[[Image.Image, Path], str]] = {}
    t0 = time.perf_counter()
    engines["rapidocr"] = rapidocr_reader()
    load = {"rapidocr": time.perf_counter() - t0}
    # The engine as it was before small images were scaled up first: the baseline of that change.
    t0 = time.perf_counter()
    engines["rapidocr-noup"] = rapidocr_reader(upscale=False)
    load["rapidocr-noup"] = time.perf_counter() - t0
    tess = tesseract_reader()
    if tess is None:
        print("tesseract: not installed (apt-get install tesseract-ocr tesseract-ocr-eng): skipped")
    else:
        engines["tesseract"] = tess
        load["tesseract"] = 0.0
        version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout
        print(f"tesseract: {version.splitlines()[0] if version else '?'}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for name, read in engines.items():
        t0 = time.perf_counter()
        read(cases[0].image, out / "0.png")  # warm-up: first call loads the models
        load[name] += time.perf_counter() - t0
    header = f"{'image':44s} {'px':>10s}" + "".join(f" {n + ' CER':>18s} {n + ' s':>16s}" for n in engines)
    print(header)
    for i, case in enumerate(cases):
        row = f"{case.name:44s} {case.image.width}x{case.image.height:<5d}"
        for name, read in engines.items():
            t0 = time.perf_counter()
            found = read(case.image, out / f"{i}.png")
            seconds = time.perf_counter() - t0
            error = cer(found, case.truth)
            results[name].append((error, seconds))
            row += f" {error:18.3f} {seconds:16.2f}"
        print(row)
    print()
    summary = {}
    for name, rows in results.items():
        mean_cer = statistics.mean(r[0] for r in rows)
        mean_s = statistics.mean(r[1] for r in rows)
        summary[name] = (mean_cer, mean_s)
        print(f"{name:14s} mean CER {mean_cer:.3f}  median CER {statistics.median(r[0] for r in rows):.3f}"
              f"  {mean_s:.2f} s/page  (load + first call {load[name]:.2f} s)")
    up, flat = summary["rapidocr"], summary["rapidocr-noup"]
    print(f"rapidocr scaled up vs not: mean CER {up[0]:.3f} vs {flat[0]:.3f}, seconds per page "
          f"{up[1] / flat[1]:.2f}x")
    if "tesseract" in summary:
        r, t = summary["rapidocr"], summary["tesseract"]
        errors = (f"CER {t[0] / r[0]:.2f}x" if r[0] else
                  f"CER {t[0]:.3f} vs {r[0]:.3f} (rapidocr made no errors)")
        print(f"tesseract vs rapidocr: {errors}, seconds per page {t[1] / r[1]:.2f}x")
    print(f"images: {out}")


if __name__ == "__main__":
    main()
