"""A dataset at a glance: NMF/AMF per domain, the vote histogram and every problem the reader found.

Used by ``mitotype data inspect``; the plain-text tables need no extra dependency.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mitotype.data.labels import ATYPICAL, MIDOG_NAMES, NORMAL
from mitotype.data.problems import GROUP_SPANS_DOMAINS, Problem, ReadResult
from mitotype.data.readers import read_dataset


@dataclass
class DomainCounts:
    domain: str
    normal: int = 0
    atypical: int = 0
    groups: int = 0
    unlabelled: int = 0

    @property
    def total(self) -> int:
        return self.normal + self.atypical + self.unlabelled


@dataclass
class InspectReport:
    """What :func:`summarize` found; ``format_text()`` for people, ``to_dict()`` for ``--json``."""

    path: str
    fmt: str
    domains: list[DomainCounts]
    atypical_votes: dict[int, int]
    """Figures by number of atypical votes (only figures with votes)."""
    votes_cast: dict[int, int]
    """Figures by number of votes cast."""
    problems: list[Problem] = field(default_factory=list)
    groups: int = 0
    """Distinct groups (slides) over all domains; a group in two domains counts once."""

    @property
    def normal(self) -> int:
        return sum(d.normal for d in self.domains)

    @property
    def atypical(self) -> int:
        return sum(d.atypical for d in self.domains)

    @property
    def unlabelled(self) -> int:
        return sum(d.unlabelled for d in self.domains)

    @property
    def total(self) -> int:
        return self.normal + self.atypical + self.unlabelled

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == "warning" for p in self.problems)

    def problem_counts(self) -> list[tuple[str, str, int]]:
        counts = Counter((p.severity, p.kind) for p in self.problems)
        rows = [(s, k, n) for (s, k), n in counts.items()]
        return sorted(rows, key=lambda t: (t[0] != "error", -t[2], t[1]))

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "format": self.fmt,
            "figures": self.total,
            "groups": self.groups,
            "normal": self.normal,
            "atypical": self.atypical,
            "unlabelled": self.unlabelled,
            "domains": [{"domain": d.domain, "normal": d.normal, "atypical": d.atypical,
                         "unlabelled": d.unlabelled, "total": d.total, "groups": d.groups} for d in self.domains],
            "atypical_votes": {str(k): v for k, v in self.atypical_votes.items()},
            "votes_cast": {str(k): v for k, v in self.votes_cast.items()},
            "problem_counts": [{"severity": s, "kind": k, "count": n} for s, k, n in self.problem_counts()],
            "problems": [p.to_dict() for p in self.problems],
        }

    def format_text(self, max_problems: int | None = None) -> str:
        """Tables of counts and the problem list (all of them unless ``max_problems`` is given)."""
        lines = [f"dataset: {self.path} (format {self.fmt})",
                 f"figures: {self.total} ({self.normal} NMF / {self.atypical} AMF"
                 f"{f' / {self.unlabelled} unlabelled' if self.unlabelled else ''}), "
                 f"{len(self.domains)} domain(s), {self.groups} group(s)", ""]
        rows = [[d.domain, d.normal, d.atypical, d.total, _pct(d.atypical, d.total), d.groups]
                for d in self.domains]
        rows.append(["total", self.normal, self.atypical, self.total, _pct(self.atypical, self.total), self.groups])
        nmf, amf = MIDOG_NAMES[NORMAL], MIDOG_NAMES[ATYPICAL]
        headers = ["domain", nmf, amf, "total", f"{amf} %", "groups"]
        lines += format_table(headers, rows, separator_before_last=True)
        lines.append("")
        if self.atypical_votes:
            with_votes = sum(self.atypical_votes.values())
            vote_rows = [[k, n, _pct(n, with_votes)] for k, n in sorted(self.atypical_votes.items())]
            lines += format_table(["atypical votes", "figures", "share"], vote_rows)
            cast = ", ".join(f"{k}: {n}" for k, n in sorted(self.votes_cast.items()))
            lines.append(f"votes cast per figure: {cast}")
        else:
            lines.append("votes: none (hard labels only)")
        lines.append("")
        if not self.problems:
            lines.append("problems: none")
            return "\n".join(lines)
        lines.append(f"problems: {self.errors} error(s), {self.warnings} warning(s)")
        lines += format_table(["severity", "kind", "count"], [list(t) for t in self.problem_counts()])
        lines.append("")
        ordered = sorted(self.problems, key=lambda p: p.severity != "error")
        shown = ordered if max_problems is None else ordered[:max_problems]
        lines += [f"{p.severity:<7} {p.kind:<22} {p}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more (use --max-problems 0 or --json)")
        return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 separator_before_last: bool = False) -> list[str]:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        parts = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(cells[0]), rule]
    body = [fmt(r) for r in cells[1:]]
    if separator_before_last and len(body) > 1:
        body.insert(len(body) - 1, rule)
    return out + body


def summarize(result: ReadResult, path: str | Path | None = None) -> InspectReport:
    """Counts per domain and votes from a reader's result."""
    per: dict[str, DomainCounts] = {}
    groups: dict[str, set[str]] = defaultdict(set)
    votes: Counter[int] = Counter()
    cast: Counter[int] = Counter()
    for r in result.records:
        d = per.setdefault(r.domain, DomainCounts(r.domain))
        if r.label is None:
            d.unlabelled += 1
        elif r.label == ATYPICAL:
            d.atypical += 1
        else:
            d.normal += 1
        groups[r.domain].add(r.group)
        if r.votes_cast:
            votes[r.atypical_votes] += 1
            cast[r.votes_cast] += 1
    for name, d in per.items():
        d.groups = len(groups[name])
    domains_of: dict[str, list[str]] = defaultdict(list)
    for name in sorted(groups):
        for group in groups[name]:
            domains_of[group].append(name)
    where = str(path if path is not None else result.path)
    spanning = [Problem(where, None, GROUP_SPANS_DOMAINS,
                        f"group {group!r} is in {len(names)} domains ({', '.join(names)}): leave-one-domain-out "
                        "drops its figures outside the held-out domain from that fold's training", "warning")
                for group, names in sorted(domains_of.items()) if len(names) > 1]
    domains = sorted(per.values(), key=lambda d: (-d.total, d.domain))
    if votes:
        for k in range(max(cast) + 1):
            votes.setdefault(k, 0)
    return InspectReport(where, result.fmt, domains, dict(sorted(votes.items())), dict(sorted(cast.items())),
                         [*result.problems, *spanning], groups=len(domains_of))


def inspect_dataset(path: str | Path, fmt: str = "auto", domain: Sequence[str] | None = None,
                    on_error: str = "fail", **options: object) -> InspectReport:
    """Read a dataset (see :func:`~mitotype.data.readers.read_dataset`) and summarise it."""
    return summarize(read_dataset(path, fmt=fmt, domain=domain, on_error=on_error, **options), path)
