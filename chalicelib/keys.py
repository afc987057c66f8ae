"""Every key of the one table, spelled once: partition and sort keys of each kind of item.

The table (``CONNECTIONS_TABLE``, defined in schema.json) holds several kinds of items side by
side; a domain service names an item through these functions and never writes a key itself:

- a connection ``PK=CONN#<id> SK=CONN``, indexed by its user (``GSI1PK=USER#<userId>``,
  ``GSI1SK=CONN#<id>``) and by a broadcast shard (``GSI2PK=ALL#<n>``, ``GSI2SK=CONN#<id>``);
- a room membership ``PK=ROOM#<room> SK=CONN#<id>``;
- a user's presence in a room ``PK=ROOM#<room> SK=USER#<userId>`` (the same partition, so a
  room's members are ``begins_with(SK, "CONN#")`` and its present users ``"USER#"``);
- a stream's head ``PK=STREAM#<stream> SK=HEAD`` and its messages ``SK=SEQ#<seq, 20 digits>``;
- a send record ``PK=SENT#<userId> SK=MSG#<clientMsgId>``;
- a continuation job's one-time claim ``PK=JOB#<jobId> SK=JOB``;
- a user's limits ``PK=USER#<userId> SK=LIMITS`` (the replay budget) and connection slots
  ``PK=USER#<userId> SK=SLOT#<n>`` (limits.py; the base table's ``USER#`` partitions are
  distinct from GSI1's, which hold no items of their own).
- a user's push device ``PK=DEVICES#<userId> SK=DEVICE#<deviceId>`` (devices.py).
"""

from __future__ import annotations

import zlib

from chalicelib.schema import ttl_attribute

# The TTL attribute (schema.json's TimeToLiveAttribute): DynamoDB deletes an item some time
# after this epoch second, so every read also compares it with now.
TTL = ttl_attribute()

# The global secondary indexes an audience Query may name (schema.json).
USERS_INDEX = "GSI1"
ALL_INDEX = "GSI2"
INDEXES = (USERS_INDEX, ALL_INDEX)

CONN_PREFIX = "CONN#"
USER_PREFIX = "USER#"
_SEQ_DIGITS = 20

Key = dict[str, str]


def conn_key(connection_id: str) -> Key:
    return {"PK": f"CONN#{connection_id}", "SK": "CONN"}


def conn_index_keys(connection_id: str, user_id: str, shard: int) -> Key:
    """The index attributes of a connection item: its user (GSI1) and broadcast shard (GSI2)."""
    return {
        "GSI1PK": user_partition(user_id),
        "GSI1SK": f"CONN#{connection_id}",
        "GSI2PK": all_partition(shard),
        "GSI2SK": f"CONN#{connection_id}",
    }


def user_partition(user_id: str) -> str:
    return f"USER#{user_id}"


def all_partition(shard: int) -> str:
    return f"ALL#{shard}"


def shard_of(connection_id: str, shards: int) -> int:
    """The ALL# shard of a connection: stable, so a connection is listed in one shard only."""
    return zlib.crc32(connection_id.encode("utf-8")) % shards


def room_partition(room: str) -> str:
    return f"ROOM#{room}"


def member_key(room: str, connection_id: str) -> Key:
    return {"PK": room_partition(room), "SK": f"CONN#{connection_id}"}


def presence_key(room: str, user_id: str) -> Key:
    return {"PK": room_partition(room), "SK": f"USER#{user_id}"}


def stream_partition(stream: str) -> str:
    return f"STREAM#{stream}"


def head_key(stream: str) -> Key:
    return {"PK": stream_partition(stream), "SK": "HEAD"}


def seq_sort_key(seq: int) -> str:
    # Zero-padded so that the sort key's string order is the seq order.
    return f"SEQ#{seq:0{_SEQ_DIGITS}d}"


def message_key(stream: str, seq: int) -> Key:
    return {"PK": stream_partition(stream), "SK": seq_sort_key(seq)}


def sent_key(user_id: str, client_msg_id: str) -> Key:
    return {"PK": f"SENT#{user_id}", "SK": f"MSG#{client_msg_id}"}


def devices_partition(user_id: str) -> str:
    return f"DEVICES#{user_id}"


DEVICE_PREFIX = "DEVICE#"


def device_key(user_id: str, device_id: str) -> Key:
    return {"PK": devices_partition(user_id), "SK": f"{DEVICE_PREFIX}{device_id}"}


def job_claim_key(job_id: str) -> Key:
    return {"PK": f"JOB#{job_id}", "SK": "JOB"}


def user_limits_key(user_id: str) -> Key:
    return {"PK": user_partition(user_id), "SK": "LIMITS"}


SLOT_PREFIX = "SLOT#"


def slot_key(user_id: str, slot: int) -> Key:
    return {"PK": user_partition(user_id), "SK": f"{SLOT_PREFIX}{slot:05d}"}
