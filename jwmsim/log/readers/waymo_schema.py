"""The Waymo Open Motion Dataset ``Scenario`` protobuf schema, declared here from the published field
numbers and types (``waymo_open_dataset/protos/scenario.proto`` and ``map.proto``, proto2), so that
jwmsim reads and writes the dataset's TFRecords with the ``protobuf`` package alone: no TensorFlow, no
``waymo-open-dataset`` wheel.

Only the messages jwmsim reads are declared; the fields it does not declare (lidar data, tracks to predict)
are kept by protobuf as unknown fields and cost nothing. Message classes: :func:`messages`.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

PACKAGE = "waymo.open_dataset"

# (field name, number, type, label, message/enum type name or None)
_D, _F, _I32, _I64, _B, _S, _M, _E = "double", "float", "int32", "int64", "bool", "string", "message", "enum"
OPT, REP = "optional", "repeated"

ENUMS = {
    "Track.ObjectType": ["TYPE_UNSET", "TYPE_VEHICLE", "TYPE_PEDESTRIAN", "TYPE_CYCLIST", "TYPE_OTHER"],
    "LaneCenter.LaneType": ["TYPE_UNDEFINED", "TYPE_FREEWAY", "TYPE_SURFACE_STREET", "TYPE_BIKE_LANE"],
    "RoadLine.RoadLineType": ["TYPE_UNKNOWN", "TYPE_BROKEN_SINGLE_WHITE", "TYPE_SOLID_SINGLE_WHITE",
                              "TYPE_SOLID_DOUBLE_WHITE", "TYPE_BROKEN_SINGLE_YELLOW", "TYPE_BROKEN_DOUBLE_YELLOW",
                              "TYPE_SOLID_SINGLE_YELLOW", "TYPE_SOLID_DOUBLE_YELLOW", "TYPE_PASSING_DOUBLE_YELLOW"],
    "RoadEdge.RoadEdgeType": ["TYPE_UNKNOWN", "TYPE_ROAD_EDGE_BOUNDARY", "TYPE_ROAD_EDGE_MEDIAN"],
    "TrafficSignalLaneState.State": ["LANE_STATE_UNKNOWN", "LANE_STATE_ARROW_STOP", "LANE_STATE_ARROW_CAUTION",
                                     "LANE_STATE_ARROW_GO", "LANE_STATE_STOP", "LANE_STATE_CAUTION", "LANE_STATE_GO",
                                     "LANE_STATE_FLASHING_STOP", "LANE_STATE_FLASHING_CAUTION"],
}

MESSAGES = {
    "ObjectState": [("center_x", 2, _D, OPT, None), ("center_y", 3, _D, OPT, None), ("center_z", 4, _D, OPT, None),
                    ("length", 5, _F, OPT, None), ("width", 6, _F, OPT, None), ("height", 7, _F, OPT, None),
                    ("heading", 8, _F, OPT, None), ("velocity_x", 9, _F, OPT, None),
                    ("velocity_y", 10, _F, OPT, None), ("valid", 11, _B, OPT, None)],
    "Track": [("id", 1, _I32, OPT, None), ("object_type", 2, _E, OPT, "Track.ObjectType"),
              ("states", 3, _M, REP, "ObjectState")],
    "MapPoint": [("x", 1, _D, OPT, None), ("y", 2, _D, OPT, None), ("z", 3, _D, OPT, None)],
    "TrafficSignalLaneState": [("lane", 1, _I64, OPT, None), ("state", 2, _E, OPT, "TrafficSignalLaneState.State"),
                               ("stop_point", 3, _M, OPT, "MapPoint")],
    "DynamicMapState": [("lane_states", 1, _M, REP, "TrafficSignalLaneState")],
    "BoundarySegment": [("lane_start_index", 1, _I32, OPT, None), ("lane_end_index", 2, _I32, OPT, None),
                        ("boundary_feature_id", 3, _I64, OPT, None),
                        ("boundary_type", 4, _E, OPT, "RoadLine.RoadLineType")],
    "LaneNeighbor": [("feature_id", 1, _I64, OPT, None), ("self_start_index", 2, _I32, OPT, None),
                     ("self_end_index", 3, _I32, OPT, None), ("neighbor_start_index", 4, _I32, OPT, None),
                     ("neighbor_end_index", 5, _I32, OPT, None), ("boundaries", 6, _M, REP, "BoundarySegment")],
    "LaneCenter": [("speed_limit_mph", 1, _D, OPT, None), ("type", 2, _E, OPT, "LaneCenter.LaneType"),
                   ("interpolating", 3, _B, OPT, None), ("polyline", 8, _M, REP, "MapPoint"),
                   ("entry_lanes", 9, _I64, REP, None), ("exit_lanes", 10, _I64, REP, None),
                   ("left_neighbors", 11, _M, REP, "LaneNeighbor"), ("right_neighbors", 12, _M, REP, "LaneNeighbor"),
                   ("left_boundaries", 13, _M, REP, "BoundarySegment"),
                   ("right_boundaries", 14, _M, REP, "BoundarySegment")],
    "RoadEdge": [("type", 1, _E, OPT, "RoadEdge.RoadEdgeType"), ("polyline", 2, _M, REP, "MapPoint")],
    "RoadLine": [("type", 1, _E, OPT, "RoadLine.RoadLineType"), ("polyline", 2, _M, REP, "MapPoint")],
    "StopSign": [("lane", 1, _I64, REP, None), ("position", 2, _M, OPT, "MapPoint")],
    "Crosswalk": [("polygon", 1, _M, REP, "MapPoint")],
    "SpeedBump": [("polygon", 1, _M, REP, "MapPoint")],
    "Driveway": [("polygon", 1, _M, REP, "MapPoint")],
    # oneof feature_data: lane, road_line, road_edge, stop_sign, crosswalk, speed_bump, driveway
    "MapFeature": [("id", 1, _I64, OPT, None), ("lane", 3, _M, OPT, "LaneCenter"), ("road_line", 4, _M, OPT, "RoadLine"),
                   ("road_edge", 5, _M, OPT, "RoadEdge"), ("stop_sign", 7, _M, OPT, "StopSign"),
                   ("crosswalk", 8, _M, OPT, "Crosswalk"), ("speed_bump", 9, _M, OPT, "SpeedBump"),
                   ("driveway", 10, _M, OPT, "Driveway")],
    "RequiredPrediction": [("track_index", 1, _I32, OPT, None), ("difficulty", 2, _I32, OPT, None)],
    "Scenario": [("timestamps_seconds", 1, _D, REP, None), ("tracks", 2, _M, REP, "Track"),
                 ("objects_of_interest", 4, _I32, REP, None), ("scenario_id", 5, _S, OPT, None),
                 ("sdc_track_index", 6, _I32, OPT, None), ("dynamic_map_states", 7, _M, REP, "DynamicMapState"),
                 ("map_features", 8, _M, REP, "MapFeature"), ("current_time_index", 10, _I32, OPT, None),
                 ("tracks_to_predict", 11, _M, REP, "RequiredPrediction")],
}
PACKED = {"LaneCenter": ("entry_lanes", "exit_lanes")}  # [packed = true] in map.proto
ONEOFS = {"MapFeature": ("feature_data", ("lane", "road_line", "road_edge", "stop_sign", "crosswalk", "speed_bump",
                                          "driveway"))}


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The message classes (``messages().Scenario``, ``.Track``, ``.MapFeature``, ...), built once in a private
    descriptor pool from the declarations above."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    FD = descriptor_pb2.FieldDescriptorProto
    types = {_D: FD.TYPE_DOUBLE, _F: FD.TYPE_FLOAT, _I32: FD.TYPE_INT32, _I64: FD.TYPE_INT64, _B: FD.TYPE_BOOL,
             _S: FD.TYPE_STRING, _M: FD.TYPE_MESSAGE, _E: FD.TYPE_ENUM}
    labels = {OPT: FD.LABEL_OPTIONAL, REP: FD.LABEL_REPEATED}
    fdp = descriptor_pb2.FileDescriptorProto(name="jwmsim_waymo_scenario.proto", package=PACKAGE, syntax="proto2")
    protos = {}
    for name, flds in MESSAGES.items():
        m = fdp.message_type.add(name=name)
        protos[name] = m
        oneof_name, members = ONEOFS.get(name, (None, ()))
        if oneof_name:
            m.oneof_decl.add(name=oneof_name)
        for fname, num, ftype, label, tname in flds:
            f = m.field.add(name=fname, number=num, type=types[ftype], label=labels[label])
            if tname:
                f.type_name = f".{PACKAGE}.{tname}"
            if fname in PACKED.get(name, ()):
                f.options.packed = True
            if fname in members:
                f.oneof_index = 0
    for full, values in ENUMS.items():
        msg, enum = full.split(".")
        e = protos[msg].enum_type.add(name=enum)
        for i, v in enumerate(values):
            e.value.add(name=v, number=i)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return SimpleNamespace(**{n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{n}"))
                              for n in MESSAGES})
