"""``derl inspect``: a dataset file's schema, sizes and provenance, as text."""

from __future__ import annotations

import json
import os

from .store import open_dataset, provenance, shard_files


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return ""  # pragma: no cover


def describe(path) -> str:
    f = open_dataset(path)
    try:
        prov = provenance(f)
        lines = [f"{path}: {_size(os.path.getsize(path))} on disk, layout {prov.get('layout')}"]
        if "shards" in prov:
            files = shard_files(path, prov["shards"])
            total = sum(os.path.getsize(s) for s in files)
            lines.append(
                f"stitched from {len(files)} shard files in {files[0].parent}/ "
                f"({_size(total)}): keep that folder beside this file"
            )
        lines.append("datasets:")

        def visit(name, obj):
            if hasattr(obj, "shape"):
                comp = "virtual" if obj.is_virtual else obj.compression or "none"
                extra = ", ".join(f"{k}={v}" for k, v in obj.attrs.items())
                lines.append(
                    f"  /{name:<34} {obj.shape!s:<20} {obj.dtype!s:<8} "
                    f"{_size(obj.size * obj.dtype.itemsize):>10}  {comp}"
                    + (f"  [{extra}]" if extra else "")
                )

        f.visititems(visit)
        lines.append("provenance:")
        for k in sorted(prov):
            v = prov[k]
            v = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
            lines.append(f"  {k}: {v}")
        return "\n".join(lines)
    finally:
        f.close()
