"""All upkeep tables. Importing this module registers every table on SQLModel.metadata."""

from models.approval import Approval, ApprovalCode, ApprovalEvent
from models.backup import BackupVersion
from models.base import UTCDateTime, utcnow
from models.customer import Contract, ContractCreate, Customer, CustomerCreate
from models.host import Host, HostCreate
from models.inspection import (
    Finding,
    FindingStatus,
    HostResult,
    InspectionRun,
    RunClaim,
    RunStatus,
)
from models.outbox import OutboxMessage, OutboxStatus

__all__ = [
    "Approval",
    "BackupVersion",
    "ApprovalCode",
    "ApprovalEvent",
    "Contract",
    "ContractCreate",
    "Customer",
    "CustomerCreate",
    "Finding",
    "FindingStatus",
    "Host",
    "HostCreate",
    "HostResult",
    "InspectionRun",
    "OutboxMessage",
    "OutboxStatus",
    "RunClaim",
    "RunStatus",
    "UTCDateTime",
    "utcnow",
]
