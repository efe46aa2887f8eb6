"""Files written whole or not at all: a reader sees the old content or the new, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from upath import UPath


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` beside `path`, then rename it into place (local files)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: UPath | Path, obj: Any) -> None:
    """Write `obj` as JSON atomically, on a local path or any fsspec URL."""
    text = json.dumps(obj, indent=2, sort_keys=True)
    upath = path if isinstance(path, UPath) else UPath(path)
    if upath.protocol in ("", "file", "local"):
        write_bytes_atomic(str(upath.path), text.encode("utf-8"))
        return
    # Object stores (s3, gcs, az) make a single put visible whole or not at all.
    upath.write_text(text, encoding="utf-8")
