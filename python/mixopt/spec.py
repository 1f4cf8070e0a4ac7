"""Study specs in mixctl's format: the proto's JSON mapping (snake_case or lowerCamelCase
names) as a dict, a JSON file, or a YAML file (YAML needs PyYAML; JSON never does)."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Union

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .errors import InvalidArgumentError
from .v1 import types_pb2

SpecLike = Union[Mapping[str, Any], str, os.PathLike, types_pb2.StudySpec]

# A spec file larger than this is not a study spec.
MAX_SPEC_BYTES = 1 << 20


def load_spec(spec: SpecLike) -> types_pb2.StudySpec:
    """A StudySpec from a dict, a path to a .yaml/.yml/.json file, or a StudySpec. Unknown
    or mistyped fields raise InvalidArgumentError naming the field path."""
    if isinstance(spec, types_pb2.StudySpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        spec = read_spec_file(os.fspath(spec))
    if not isinstance(spec, Mapping):
        raise InvalidArgumentError(f"spec: expected a dict or a file path, got {type(spec).__name__}", field="spec")
    _check_fields(spec, types_pb2.StudySpec.DESCRIPTOR, "")
    msg = types_pb2.StudySpec()
    try:
        json_format.ParseDict(spec, msg)
    except json_format.ParseError as e:
        raise InvalidArgumentError(f"spec: {e}", field="spec") from e
    return msg


def read_spec_file(path: str) -> Mapping[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise InvalidArgumentError(f"spec: {e}", field="spec") from e
    if len(raw) > MAX_SPEC_BYTES:
        raise InvalidArgumentError(f"spec: {path} is larger than {MAX_SPEC_BYTES} bytes", field="spec")
    text = raw.decode("utf-8")
    if path.endswith(".json"):
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as e:
            raise InvalidArgumentError(f"spec: {path}: {e}", field="spec") from e
    else:
        try:
            import yaml  # optional: only YAML specs need it
        except ImportError as e:
            raise InvalidArgumentError(
                f"spec: {path} is YAML, which needs PyYAML (pip install pyyaml or apt-get install python3-yaml); "
                "or give the spec as JSON or a dict", field="spec") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InvalidArgumentError(f"spec: {path}: {e}", field="spec") from e
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"spec: {path} does not hold a mapping", field="spec")
    return data


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice")
        out[k] = v
    return out


def _is_repeated(f: FieldDescriptor) -> bool:
    # Recent protobuf releases deprecate FieldDescriptor.label for is_repeated.
    rep = getattr(f, "is_repeated", None)
    if rep is not None:
        return bool(rep() if callable(rep) else rep)
    return f.label == FieldDescriptor.LABEL_REPEATED


def _numeric(v) -> bool:
    """Numbers, and strings the JSON mapping accepts as numbers ("12", "1e9", "NaN")."""
    if not isinstance(v, str):
        return True
    try:
        float(v)
    except ValueError:
        return False
    return True


def _integral(v) -> bool:
    """Integers as the JSON mapping accepts them: 12, 12.0, "12"."""
    if isinstance(v, float):
        return v.is_integer()
    if isinstance(v, str):
        try:
            int(v)
        except ValueError:
            return False
    return True


def _check_fields(data: Mapping[str, Any], desc: Descriptor, path: str) -> None:
    """Name the first unknown or mistyped field by its full path, which protobuf's own
    parser does not do on every release."""
    by_name = {}
    for f in desc.fields:
        by_name[f.name] = f
        by_name[f.json_name] = f
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        f = by_name.get(key)
        if f is None:
            known = ", ".join(sorted(x.name for x in desc.fields))
            raise InvalidArgumentError(f"{where}: unknown field (known: {known})", field=where)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            if not isinstance(value, Mapping):
                raise InvalidArgumentError(f"{where}: expected a mapping", field=where)
            continue
        repeated = _is_repeated(f)
        items = value if repeated else [value]
        if repeated and not isinstance(value, list):
            raise InvalidArgumentError(f"{where}: expected a list", field=where)
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if repeated else where
            if f.message_type is not None:
                if not isinstance(item, Mapping):
                    raise InvalidArgumentError(f"{at}: expected a mapping", field=at)
                _check_fields(item, f.message_type, at)
            elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                if isinstance(item, bool) or not isinstance(item, (int, float, str)) or not _numeric(item):
                    raise InvalidArgumentError(f"{at}: expected a number, got {item!r}", field=at)
            elif f.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
                            FieldDescriptor.TYPE_UINT64):
                if isinstance(item, bool) or not isinstance(item, (int, float, str)) or not _integral(item):
                    raise InvalidArgumentError(f"{at}: expected an integer, got {item!r}", field=at)
            elif f.type == FieldDescriptor.TYPE_STRING and f.enum_type is None:
                if not isinstance(item, str):
                    raise InvalidArgumentError(f"{at}: expected a string, got {item!r}", field=at)
