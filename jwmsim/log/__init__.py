"""DriveLog: schema (:mod:`.schema`), atomic on-disk store with lazy frames (:mod:`.store`), validation (:mod:`.validate`)."""

from jwmsim.log.schema import (
    AGENT_TYPES,
    SCHEMA_VERSION,
    AgentTracks,
    DriveLog,
    EgoParams,
    EgoTrajectory,
    Frame,
    FrameSource,
    LogMeta,
    agent_type_index,
)
from jwmsim.log.store import MAIN_RIG, LogError, LogWriter, read_log, read_manifest, write_log
from jwmsim.log.validate import validate_log

__all__ = [
    "AGENT_TYPES", "SCHEMA_VERSION", "AgentTracks", "DriveLog", "EgoParams", "EgoTrajectory", "Frame", "FrameSource",
    "LogMeta", "agent_type_index", "MAIN_RIG", "LogError", "LogWriter", "read_log", "read_manifest", "write_log",
    "validate_log",
]
