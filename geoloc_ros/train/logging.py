"""Run logs: one CSV per group (train.csv, val.csv) plus TensorBoard scalars (tensorboardX).

CSV so any tool can plot a run; TensorBoard because people expect it. Only rank 0 of a
distributed run writes (`enabled=False` elsewhere). A resumed run appends to the files.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)


class RunLogger:
    """`scalars(step, values, group)` -> a row in `<out>/<group>.csv` and `group/key` in TensorBoard."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.out = Path(out_dir)
        self.enabled = enabled
        self._headers: dict[str, list[str]] = {}
        self.tb = None
        if enabled and tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                log.warning("tensorboardX is not installed: TensorBoard logs off (CSV still written)")

    def _header(self, path: Path, keys: list[str]) -> list[str]:
        if path.name in self._headers:
            return self._headers[path.name]
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                header = next(csv.reader(f), None) or []
            if set(keys) <= set(header):
                self._headers[path.name] = header
                return header
            path.rename(path.with_suffix(".old.csv"))  # columns changed: keep the old file aside
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(keys)
        self._headers[path.name] = keys
        return keys

    def scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None:
        if not self.enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        row = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        path = self.out / f"{group}.csv"
        header = self._header(path, list(row))
        with path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in header])
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self.tb.add_scalar(f"{group}/{k}", float(v), int(step))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
