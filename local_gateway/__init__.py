"""Local API Gateway WebSocket emulator for Chalice apps (placeholder docstring)."""

from __future__ import annotations

from local_gateway.dynamodb import EmbeddedDynamoDB, ensure_table, load_table_schema
from local_gateway.faults import FaultConfig, FaultInjector
from local_gateway.gateway import GatewayURLs, InvocationLog, LocalGateway
from local_gateway.project import Invocation
from local_gateway.server import Limits

__all__ = [
    "EmbeddedDynamoDB",
    "FaultConfig",
    "FaultInjector",
    "GatewayURLs",
    "Invocation",
    "InvocationLog",
    "Limits",
    "LocalGateway",
    "ensure_table",
    "load_table_schema",
]
