"""Readers of public driving datasets into state-only DriveLogs (no camera frames).

* :mod:`.waymo`: Waymo Open Motion Dataset scenario TFRecords (``protobuf`` only; schema in
  :mod:`.waymo_schema`, framing in :mod:`.tfrecord`);
* :mod:`.av2`: Argoverse 2 motion-forecasting scenarios (``pyarrow``).

Both need the ``real`` extra (``pip install 'jwmsim[real]'``). :func:`read_source` reads a source spec as
scenario files and ``jwmsim log import`` write it: ``waymo:PATH#SCENARIO_ID`` or ``av2:PATH``. Each
module's docstring lists what the source lacks and the choice made for it.
"""

from __future__ import annotations

from pathlib import Path

from jwmsim.log.readers.common import ReaderError

SOURCE_KINDS = ("waymo", "av2")


def read_source(spec: str):
    """The DriveLog of ``waymo:PATH[#SCENARIO_ID]`` or ``av2:PATH``; a ReaderError naming the problem otherwise."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise ReaderError(f"source {spec!r} is not 'waymo:PATH#SCENARIO_ID' or 'av2:PATH' (an Argoverse 2 scenario "
                          "folder)")
    try:
        if kind == "waymo":
            from jwmsim.log.readers.waymo import read_waymo

            path, _, sid = rest.rpartition("#") if "#" in rest else (rest, "", "")
            return read_waymo(Path(path).expanduser(), sid or None)
        from jwmsim.log.readers.av2 import read_av2

        return read_av2(Path(rest).expanduser())
    except ImportError as e:
        raise ReaderError(f"reading {kind} scenarios needs the package {e.name!r}: pip install 'jwmsim[real]'") from None


__all__ = ["ReaderError", "SOURCE_KINDS", "read_source"]
