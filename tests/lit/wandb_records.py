"""Read an offline W&B run file (``run-<id>.wandb``) without a server: a 7-byte header (``:W&B``, magic, version)
then LevelDB log records (32 KiB blocks; each record: crc32 (4), length (2, little endian), type (1: full,
2/3/4: first/middle/last fragment)) holding ``wandb_internal_pb2.Record`` protobufs. Test helper only."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[object]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the end of the block
            pos += left_in_block
            continue
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        pending += payload
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def summary(path: Path) -> dict:
    """``{"keys": metric keys logged, "group", "job_type", "tags", "config_keys"}`` of one offline run."""
    out = {"keys": set(), "group": None, "job_type": None, "tags": [], "config_keys": set()}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["keys"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "run":
            out.update(group=record.run.run_group, job_type=record.run.job_type, tags=list(record.run.tags))
        elif kind == "config":
            out["config_keys"] |= {item.key or "/".join(item.nested_key) for item in record.config.update}
    return out
