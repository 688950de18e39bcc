"""DriveLog: schema (:mod:`.schema`; ego dimensions and agent types: :mod:`jwmsim.datatypes`), atomic on-disk store with lazy frames (:mod:`.store`), validation (:mod:`.validate`)."""

from jwmsim.log.schema import SCHEMA_VERSION, AgentTracks, DriveLog, EgoTrack, Frame, FrameSource, LogMeta
from jwmsim.log.store import MAIN_RIG, LogError, LogWriter, read_log, read_manifest, write_log
from jwmsim.log.validate import validate_log

__all__ = [
    "SCHEMA_VERSION", "AgentTracks", "DriveLog", "EgoTrack", "Frame", "FrameSource", "LogMeta", "MAIN_RIG", "LogError", "LogWriter", "read_log", "read_manifest", "write_log",
    "validate_log",
]
