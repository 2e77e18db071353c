"""``milterkit filters``: list the filters installed under the entry-point group
``milterkit.filters`` (name, distribution, description, options)."""

from __future__ import annotations

import argparse
import json

HELP = "List the installed filters (entry-point group milterkit.filters)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``filters``' options to its parser."""
    parser.add_argument("--json", action="store_true", help="print JSON, one object per filter")
    parser.add_argument("--no-load", action="store_true",
                        help="do not import the filters (no description or options)")


def main(args: argparse.Namespace) -> int:
    """Print one block per installed filter; 1 if one of them cannot be loaded."""
    from ..compose.unit import FilterLoadError, installed_filters, load_entry_point

    status = 0
    rows = []
    for ep in installed_filters():
        dist = getattr(ep, "dist", None)
        row: dict[str, object] = {
            "name": ep.name, "value": ep.value,
            "distribution": f"{dist.name} {dist.version}" if dist else None,
        }
        if not args.no_load:
            try:
                unit = load_entry_point(ep)
            except FilterLoadError as exc:
                row["error"] = str(exc)
                status = 1
            else:
                row["description"] = unit.description
                row["options"] = {key: value for key, value in unit.options.items()}
        rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row, default=repr))
        return status
    if not rows:
        print("no filters installed (packages publish them under the entry-point group "
              "milterkit.filters)")
        return status
    for row in rows:
        print(f"{row['name']}  ({row['value']}, {row['distribution'] or 'unknown distribution'})")
        if "error" in row:
            print(f"    cannot load: {row['error']}")
            continue
        if row.get("description"):
            print(f"    {row['description']}")
        options = row.get("options") or {}
        assert isinstance(options, dict)
        for key, value in options.items():
            print(f"    option {key} = {value!r}")
    return status
