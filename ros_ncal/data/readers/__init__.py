"""Source readers: each turns one kind of recording into Samples (or SkipRecords saying why a frame was left out).

``write_samples`` drives any reader into a ShardWriter with a progress bar and returns a ConversionReport.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..sample import Sample
from ..shards import ShardWriter, SkipRecord


@dataclass
class ConversionReport:
    """What a conversion did: samples written, and every skipped item with its reason."""

    written: int = 0
    skipped: list[SkipRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def reason_counts(self) -> Counter:
        return Counter(r.reason.split(':')[0] for r in self.skipped)

    def summary(self, max_lines: int = 20) -> str:
        lines = [f'written: {self.written} samples, skipped: {len(self.skipped)}']
        for r in self.skipped[:max_lines]:
            lines.append(f'  skipped {r.what}: {r.reason}')
        if len(self.skipped) > max_lines:
            lines.append(f'  ... {len(self.skipped) - max_lines} more')
        lines += [f'  note: {n}' for n in self.notes]
        return '\n'.join(lines)


def write_samples(items: Iterable[Sample | SkipRecord], writer: ShardWriter, total: int | None = None,
                  desc: str = 'samples', progress: bool = True) -> ConversionReport:
    """Append every Sample of ``items`` to ``writer``; collect SkipRecords. Returns the report."""
    from tqdm import tqdm
    report = ConversionReport()
    bar = tqdm(total=total, desc=desc, unit='sample', disable=not progress, dynamic_ncols=True)
    try:
        for item in items:
            if isinstance(item, SkipRecord):
                report.skipped.append(item)
            else:
                try:
                    writer.append(item)
                    report.written += 1
                except ValueError as exc:  # a Sample the shard format cannot hold (e.g. meta not JSON)
                    report.skipped.append(SkipRecord(str(item.meta.get('frame', '?')), f'unwritable: {exc}'))
            bar.update(1)
            bar.set_postfix(written=report.written, skipped=len(report.skipped))
    finally:
        bar.close()
    return report


def load_reader_config(cls, path=None, **overrides):
    """Build reader config dataclass ``cls`` from a YAML mapping (unknown keys raise), then apply overrides
    (None values are ignored). Lists become tuples where the default is a tuple."""
    import dataclasses
    from pathlib import Path
    data = {}
    if path is not None:
        import yaml
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected a mapping of {cls.__name__} fields')
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'{path or cls.__name__}: unknown key(s) {unknown}; known: {sorted(known)}')
    defaults = cls()
    for k, v in list(data.items()):
        if isinstance(getattr(defaults, k), tuple) and isinstance(v, list):
            data[k] = tuple(v)
    return cls(**data)
