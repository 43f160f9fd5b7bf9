"""A synthetic multi-domain mitotic figure dataset, drawn procedurally with numpy (deterministic by seed).

Why: tests, demos and CPU smoke runs need a dataset that is small, free to redistribute, learnable but
not trivial, and that has a real domain shift. Each figure has a latent *atypicality* ``t`` in [0, 1]:

* normal figures (``t`` mostly low): a compact metaphase plate, a prometaphase ring, or two separating
  (anaphase) masses;
* atypical figures (``t`` mostly high): the same bases with an abnormality whose strength grows with
  ``t``: a third (or fourth) pole, lagging chromatin between separating masses or beside a plate,
  asymmetric masses, scattered fragments around a ring.

The two classes' ``t`` overlap (a borderline continuum), so three simulated experts (a threshold on ``t``
plus noise each) disagree on borderline figures; the label is their majority, as in the real data.
Nuisances independent of the class: size, rotation, chromatin intensity and texture, interphase nuclei,
background. Each domain has its own stain colours (H&E-like pink eosin background, purple-blue
hematoxylin chromatin, via Beer-Lambert optical densities), intensity, blur and noise.

Written in the ``midog25`` layout (``synthetic_midog25.csv`` with the official columns + ``images/``
of ``image_id`` PNGs), so :func:`mitotype.data.readers.read_dataset` reads it with its default reader.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mitotype.data.labels import vote_name
from mitotype.data.readers.midog25 import COLUMNS
from mitotype.errors import ConfigError

LABEL_FILE = "synthetic_midog25.csv"
INFO_FILE = "synthetic.json"


@dataclass(frozen=True)
class DomainStyle:
    """How one simulated scanner/lab renders a slide."""

    name: str
    tumor: str
    scanner: str
    lab: str
    species: str
    hematoxylin: tuple[float, float, float]
    """Optical density per unit of hematoxylin (R, G, B): purple-blue chromatin."""
    eosin: tuple[float, float, float]
    """Optical density per unit of eosin (R, G, B): pink background."""
    eosin_level: float
    chromatin: float
    """Chromatin optical density scale (stain intensity)."""
    blur: float
    """Gaussian blur radius in pixels (focus / optics)."""
    noise: float
    """Pixel noise standard deviation (grey levels)."""
    brightness: float


_BASE_STYLES = (
    DomainStyle("A", "synthetic breast carcinoma", "Synth Scanner A", "Synth Lab 1", "Human",
                (0.62, 0.78, 0.30), (0.10, 0.85, 0.38), 0.42, 1.00, 0.5, 3.0, 1.00),
    DomainStyle("B", "synthetic lymphoma", "Synth Scanner B", "Synth Lab 2", "Canine",
                (0.80, 0.72, 0.22), (0.18, 0.80, 0.30), 0.50, 1.15, 1.5, 2.0, 0.93),
    DomainStyle("C", "synthetic mast cell tumour", "Synth Scanner C", "Synth Lab 3", "Canine",
                (0.52, 0.80, 0.42), (0.06, 0.90, 0.50), 0.30, 0.78, 0.3, 5.0, 1.05),
    DomainStyle("D", "synthetic melanoma", "Synth Scanner D", "Synth Lab 4", "Human",
                (0.58, 0.85, 0.24), (0.22, 0.95, 0.20), 0.55, 1.05, 1.0, 4.0, 0.97),
)


def domain_styles(n: int, seed: int = 0) -> list[DomainStyle]:
    """The first four styles are fixed; more are random perturbations of them (deterministic by seed)."""
    styles = list(_BASE_STYLES[:n])
    rng = np.random.default_rng([seed, 7919])
    for i in range(len(styles), n):
        base = _BASE_STYLES[i % len(_BASE_STYLES)]

        def jitter(v: tuple[float, float, float], s: float = 0.08) -> tuple[float, float, float]:
            return tuple(float(np.clip(x + rng.normal(0, s), 0.02, 1.2)) for x in v)  # type: ignore[return-value]

        styles.append(DomainStyle(
            f"{base.name}{i}", f"synthetic tumour {i + 1}", f"Synth Scanner {i + 1}", f"Synth Lab {i + 1}",
            base.species, jitter(base.hematoxylin), jitter(base.eosin),
            float(np.clip(base.eosin_level + rng.normal(0, 0.06), 0.2, 0.7)),
            float(np.clip(base.chromatin + rng.normal(0, 0.1), 0.6, 1.3)),
            float(np.clip(base.blur + rng.normal(0, 0.4), 0.0, 2.0)),
            float(np.clip(base.noise + rng.normal(0, 1.0), 1.0, 6.0)), base.brightness))
    return styles


class _Canvas:
    """Density fields on a ``size`` x ``size`` grid, with a bank of smooth noise textures."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        # start-up time: PIL loads only when figures are drawn
        from PIL import Image

        self.size = size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.X, self.Y = xx - size / 2, yy - size / 2
        bank = []
        for cells in (4, 6, 8, 16, 24, 32):
            for _ in range(3):
                small = rng.standard_normal((cells, cells)).astype(np.float32)
                big = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))
                bank.append((big - big.mean()) / (big.std() + 1e-6))
        self.bank = bank

    def texture(self, rng: np.random.Generator, coarse: bool = False) -> np.ndarray:
        """A smooth zero-mean unit-variance noise field (random member of the bank, randomly flipped)."""
        pool = self.bank[:9] if coarse else self.bank[6:]
        field = pool[int(rng.integers(len(pool)))]
        k = int(rng.integers(8))
        field = np.rot90(field, k % 4)
        return field[:, ::-1] if k >= 4 else field

    def blob(self, cx: float, cy: float, a: float, b: float, theta: float, edge: float = 1.0) -> np.ndarray:
        """A filled ellipse (semi-axes ``a``, ``b`` px) with a soft edge of about ``edge`` px."""
        out = np.zeros((self.size, self.size), np.float32)
        self.stamp(out, cx, cy, a, b, theta, 1.0, edge)
        return out

    def stamp(self, target: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float,
              scale: float = 1.0, edge: float = 1.0) -> None:
        """``target = max(target, scale * ellipse)``, computed only inside the ellipse's bounding box."""
        half = self.size / 2
        reach = max(a, b) + 2 * edge + 1
        x0, x1 = max(int(cx + half - reach), 0), min(int(cx + half + reach) + 1, self.size)
        y0, y1 = max(int(cy + half - reach), 0), min(int(cy + half + reach) + 1, self.size)
        if x1 <= x0 or y1 <= y0 or scale <= 0:
            return
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = self.X[y0:y1, x0:x1] - cx, self.Y[y0:y1, x0:x1] - cy
        u = (dx * c + dy * s) / a
        v = (-dx * s + dy * c) / b
        r = np.sqrt(u * u + v * v)
        value = np.clip(0.5 - (r - 1.0) * min(a, b) / (2 * edge), 0.0, 1.0) * scale
        np.maximum(target[y0:y1, x0:x1], value, out=target[y0:y1, x0:x1])


def _rot(u: float, v: float, theta: float) -> tuple[float, float]:
    c, s = math.cos(theta), math.sin(theta)
    return u * c - v * s, u * s + v * c


def _mass(cv: _Canvas, rng: np.random.Generator, d: np.ndarray, cx: float, cy: float, length: float,
          thick: float, theta: float, curve: float = 0.0, scale: float = 1.0) -> None:
    """Stamp a chromosome mass: overlapping knobby blobs along a (slightly curved) axis through (cx, cy)."""
    n = max(3, int(length / 3.5))
    for i in range(n):
        u = (i / (n - 1) - 0.5) * length
        v = curve * (u / max(length, 1.0)) ** 2 * length + rng.normal(0, thick * 0.1)
        du, dv = _rot(u, v, theta)
        a = rng.uniform(2.8, 4.5)
        b = thick / 2 * rng.uniform(0.8, 1.15)
        cv.stamp(d, cx + du, cy + dv, a, b, theta + rng.normal(0, 0.3), scale * rng.uniform(0.85, 1.0))


def _figure(cv: _Canvas, rng: np.random.Generator, t: float) -> tuple[np.ndarray, str]:
    """Chromatin density of one figure with atypicality ``t``, and a short description of it."""
    strength = float(np.clip((t - 0.25) / 0.5, 0.0, 1.0))
    strength = strength * strength * (3 - 2 * strength)  # smoothstep: subtle near the border
    cx, cy = rng.normal(0, 2.0, size=2)
    theta = rng.uniform(0, math.pi)
    length = rng.uniform(24, 38)
    thick = rng.uniform(8, 13)
    base = str(rng.choice(["plate", "ring", "anaphase"], p=[0.42, 0.18, 0.40]))
    d = np.zeros((cv.size, cv.size), np.float32)
    if base == "plate":
        _mass(cv, rng, d, cx, cy, length, thick, theta, curve=rng.normal(0, 0.15))
        kind = str(rng.choice(["multipolar", "lagging"]))
        if kind == "multipolar" and strength > 0.02:  # a third (fourth) arm: a Y- or X-shaped plate
            poles = 1 if strength < 0.8 or rng.random() < 0.6 else 2
            for k in range(poles):
                phi = theta + math.pi / 2 + k * math.pi + rng.normal(0, 0.3)
                arm = length * (0.2 + 0.45 * strength)
                du, dv = _rot(arm / 2 + thick / 3, 0.0, phi)
                _mass(cv, rng, d, cx + du, cy + dv, arm, thick * 0.85, phi, scale=0.5 + 0.5 * strength)
        elif kind == "lagging":  # chromosomes left off the plate
            for _ in range(round(1 + 4 * strength)):
                side = rng.choice([-1.0, 1.0])
                du, dv = _rot(rng.uniform(-0.4, 0.4) * length, side * rng.uniform(9, 17), theta)
                r = 2.0 + 2.2 * strength
                cv.stamp(d, cx + du, cy + dv, r, r * 0.8, rng.uniform(0, 3), strength)
    elif base == "ring":
        radius, n = rng.uniform(10, 15), int(rng.integers(9, 13))
        for i in range(n):
            phi = 2 * math.pi * i / n + rng.normal(0, 0.1)
            cv.stamp(d, cx + radius * math.cos(phi), cy + radius * math.sin(phi), rng.uniform(3.2, 4.8),
                     rng.uniform(2.8, 3.8), phi)
        kind = "scattered"
        for _ in range(round(5 * strength)):
            phi = rng.uniform(0, 2 * math.pi)
            rr = radius + rng.uniform(7, 14)
            cv.stamp(d, cx + rr * math.cos(phi), cy + rr * math.sin(phi), 2.8, 2.3, phi, strength)
    else:
        gap = rng.uniform(14, 24)
        kind = str(rng.choice(["lagging", "asymmetric", "multipolar"]))
        shrink = 1.0 - 0.6 * strength if kind == "asymmetric" else 1.0
        grow = 1.0 + 0.25 * strength if kind == "asymmetric" else 1.0
        sides = [(-1.0, length * 0.85 * grow, thick),
                 (1.0, length * 0.85 * shrink, thick * (0.6 + 0.4 * shrink))]
        if kind == "multipolar" and strength > 0.02:  # separation along three axes instead of two
            for k, (_, ln, th) in enumerate([sides[0], sides[1], (0.0, length * 0.7, thick)]):
                # poles 0 and 1 start opposite (a normal anaphase) and open to 120 degrees with strength
                phi = theta + math.pi / 2 + k * (2 * math.pi / 3) * strength
                if k == 1:
                    phi += math.pi * (1 - strength)
                du, dv = _rot(gap / 2 + 2, 0.0, phi)
                _mass(cv, rng, d, cx + du, cy + dv, ln, th, phi + math.pi / 2,
                      scale=1.0 if k < 2 else strength)
        else:
            for side, ln, th in sides:
                du, dv = _rot(0.0, side * gap / 2, theta)
                _mass(cv, rng, d, cx + du, cy + dv, ln, th, theta, curve=-side * 0.12)
            if kind == "lagging":
                for _ in range(round(1 + 3 * strength)):
                    du, dv = _rot(rng.uniform(-0.35, 0.35) * length, rng.uniform(-0.3, 0.3) * gap, theta)
                    r = 1.8 + 2.0 * strength
                    cv.stamp(d, cx + du, cy + dv, r, r * 0.7, rng.uniform(0, 3), strength)
                if strength > 0.5:  # a chromatin bridge between the masses
                    bu, bv = _rot(0.0, 0.0, theta)
                    cv.stamp(d, cx + bu, cy + bv, gap / 2, 1.7, theta + math.pi / 2 + rng.normal(0, 0.15),
                             strength - 0.3)
    texture = 0.82 + 0.18 * cv.texture(rng)
    return np.clip(d * texture, 0.0, 1.0), f"{base}+{kind}" if strength > 0.02 else base


def render(cv: _Canvas, rng: np.random.Generator, style: DomainStyle, t: float) -> tuple[np.ndarray, str]:
    """One RGB uint8 patch of a figure with atypicality ``t`` in ``style``."""
    # start-up time: PIL loads only when figures are drawn
    from PIL import Image, ImageFilter

    figure, description = _figure(cv, rng, t)
    size = cv.size
    nuclei = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(2, 6))):  # interphase nuclei around the mitotic cell
        phi, dist = rng.uniform(0, 2 * math.pi), rng.uniform(36, 72)
        cv.stamp(nuclei, dist * math.cos(phi), dist * math.sin(phi), rng.uniform(8, 14), rng.uniform(6, 10),
                 rng.uniform(0, math.pi), 0.3 + 0.2 * rng.random(), edge=1.5)
    hema = nuclei * (1 + 0.3 * cv.texture(rng)) + 0.06 + 0.025 * cv.texture(rng, coarse=True)
    hema = np.maximum(hema, figure * (style.chromatin * rng.uniform(1.6, 2.2)))
    halo = np.zeros((size, size), np.float32)
    cv.stamp(halo, 0.0, 0.0, rng.uniform(26, 34), rng.uniform(22, 28), rng.uniform(0, math.pi), edge=6)
    eosin = style.eosin_level * (1 + 0.15 * cv.texture(rng, coarse=True)) * (1 - 0.35 * halo)
    od = hema[..., None] * np.asarray(style.hematoxylin, np.float32) + eosin[..., None] * np.asarray(
        style.eosin, np.float32)
    rgb = (255.0 * style.brightness) * np.exp(-od)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if style.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(style.blur * rng.uniform(0.8, 1.2)))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * style.noise
    return np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8), description


def write_synthetic(out_dir: str | Path, n_per_domain: int = 150, domains: int = 4,
                    atypical_fraction: float = 0.25, seed: int = 0, size: int = 128,
                    slides_per_domain: int | None = None) -> Path:
    """Write the dataset to ``out_dir`` (CSV + ``images/``) and return ``out_dir``.

    ``n_per_domain`` figures in each of ``domains`` domains; about ``atypical_fraction`` of them are
    drawn atypical (the label is the simulated experts' majority, so the final share differs slightly).
    The same arguments always give byte-identical files.
    """
    if n_per_domain < 1 or domains < 1:
        raise ConfigError("n_per_domain and domains must be at least 1")
    if not 0.0 < atypical_fraction < 1.0:
        raise ConfigError(f"atypical_fraction must be in (0, 1), not {atypical_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:  # numpy seeds: ints >= 0
        raise ConfigError(f"seed must be a whole number >= 0, not {seed!r}")
    # start-up time: PIL loads only when figures are drawn
    from PIL import Image

    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    styles = domain_styles(domains, seed)
    cv = _Canvas(size, np.random.default_rng([seed, 1]))
    slides = slides_per_domain or max(2, min(10, n_per_domain // 30))
    expert_bias = (-0.03, 0.04, 0.0)
    rows, latent = [], []
    image_id = 0
    for d, style in enumerate(styles):
        rng = np.random.default_rng([seed, 100 + d])
        for _ in range(n_per_domain):
            image_id += 1
            drawn = rng.random() < atypical_fraction
            t = float(rng.beta(6.0, 2.2) if drawn else rng.beta(1.6, 6.0))
            pixels, description = render(cv, rng, style, t)
            name = f"{image_id}.png"
            Image.fromarray(pixels).save(images / name, compress_level=1)
            votes = [t + b + rng.normal(0, 0.09) > 0.5 for b in expert_bias]
            e1, e2 = votes[0], votes[1]
            e3 = "" if e1 == e2 else vote_name(votes[2])
            majority = e1 if e1 == e2 else votes[2]
            slide = f"synth{style.name}_{int(rng.integers(slides)) + 1:02d}.tiff"
            rows.append({
                "image_id": name, "filename": slide,
                "coordinateX": str(int(rng.integers(64, 8000))),
                "coordinateY": str(int(rng.integers(64, 6000))),
                "Tumor": style.tumor, "Scanner": style.scanner, "Origin": style.lab, "Species": style.species,
                "expert1": vote_name(e1), "expert2": vote_name(e2), "expert3": e3,
                "majority": vote_name(majority),
            })
            latent.append({"image_id": name, "t": round(t, 4), "drawn_atypical": bool(drawn),
                           "figure": description})
    tmp = out / f".{LABEL_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / LABEL_FILE)
    info = {"generator": "mitotype.data.synth", "seed": seed, "n_per_domain": n_per_domain,
            "domains": domains, "atypical_fraction": atypical_fraction, "size": size,
            "styles": [asdict(s) for s in styles], "figures": latent}
    tmp = out / f".{INFO_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / INFO_FILE)
    return out
