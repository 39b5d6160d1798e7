"""What a prediction run has done, on disk as it goes: the state that makes ``predict.py`` resumable.

``<out_dir>/.predict/``:

* ``inputs.json``: the input list's fingerprint and size (a resumed run must be given the same inputs);
* ``part-<run>-rank<r>.jsonl``: one line per image a process finished (its records, or why it could not
  be read), appended a batch at a time and flushed. A process killed mid-write leaves at most one
  incomplete last line: it is ignored, so that image is predicted again. Each file lists its images in
  input order (a process predicts its share of the pending images in order), so all files merge into
  input order as a stream (:meth:`Journal.merged`), whatever the number of processes and of runs.
"""
from __future__ import annotations

import glob
import heapq
import json
import os
import os.path as osp
import re
from typing import IO, Iterator, Optional

from ..errors import ConfigError

__all__ = ['Journal', 'JournalWriter']

_PART = re.compile(r'part-(\d+)-rank(\d+)\.jsonl$')


def _lines(path: str) -> Iterator[dict]:
    """The valid lines of one part file: a torn last line does not parse (a prefix of a JSON object is
    not one) and ends the file."""
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


class JournalWriter:
    """Appends one process's finished images to its part file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[IO[str]] = None

    def write(self, lines: list[dict]) -> None:
        """One batch's lines, in one write, flushed (a SIGKILL after it loses nothing of it)."""
        if not lines:
            return
        if self._file is None:
            self._file = open(self.path, 'a')
        self._file.write(''.join(json.dumps(line) + '\n' for line in lines))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Journal:
    """The ``.predict`` folder of an output folder."""

    def __init__(self, out_dir: str) -> None:
        self.folder = osp.join(out_dir, '.predict')

    def parts(self) -> list[str]:
        return sorted(glob.glob(osp.join(self.folder, 'part-*-rank*.jsonl')))

    def start(self, fingerprint: str, size: int) -> tuple[set, int]:
        """(the indices already done, this run's number). Checks that the inputs are the ones the
        folder's earlier runs predicted on; records them on a first run."""
        os.makedirs(self.folder, exist_ok=True)
        manifest = osp.join(self.folder, 'inputs.json')
        if osp.isfile(manifest):
            with open(manifest) as f:
                known = json.load(f)
            if known.get('fingerprint') != fingerprint:
                raise ConfigError(f"{osp.dirname(self.folder)} holds predictions for other inputs ({known.get('size')} "
                                  f"images, not these {size}): give a new --out-dir, or the same inputs to resume")
        else:
            tmp = manifest + '.tmp'
            with open(tmp, 'w') as f:
                json.dump(dict(fingerprint=fingerprint, size=size), f)
            os.replace(tmp, manifest)
        done = {line['i'] for part in self.parts() for line in _lines(part)}
        runs = [int(_PART.search(p).group(1)) for p in self.parts()]
        return done, max(runs, default=0) + 1

    def writer(self, run: int, rank: int) -> JournalWriter:
        return JournalWriter(osp.join(self.folder, f'part-{run:03d}-rank{rank}.jsonl'))

    def merged(self) -> Iterator[dict]:
        """Every finished image's line, in input order, each image once."""
        last = -1
        for line in heapq.merge(*(_lines(p) for p in self.parts()), key=lambda line: line['i']):
            if line['i'] != last:
                last = line['i']
                yield line
