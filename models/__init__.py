"""All upkeep tables. Importing this module registers every table on SQLModel.metadata."""

from upkeep.models.advisory import AdvisoryRecord, HostInventory
from upkeep.models.approval import Approval, ApprovalCode, ApprovalEvent, ApprovalLink
from upkeep.models.backup import BackupVersion
from upkeep.models.base import UTCDateTime, utcnow
from upkeep.models.customer import Contract, ContractCreate, Customer, CustomerCreate
from upkeep.models.enums import Fault, Outcome
from upkeep.models.host import Host, HostCreate
from upkeep.models.inspection import (
    Finding,
    FindingStatus,
    HostResult,
    InspectionRun,
    RunClaim,
    RunStatus,
)
from upkeep.models.interface import InterfaceProbe
from upkeep.models.outbox import OutboxMessage, OutboxStatus
from upkeep.models.patch import PatchPlan, PatchStep
from upkeep.models.release import Release, ReleaseStep

__all__ = [
    "AdvisoryRecord",
    "HostInventory",
    "Approval",
    "BackupVersion",
    "ApprovalCode",
    "ApprovalEvent",
    "ApprovalLink",
    "Contract",
    "ContractCreate",
    "Customer",
    "CustomerCreate",
    "Fault",
    "Finding",
    "FindingStatus",
    "Host",
    "HostCreate",
    "HostResult",
    "InspectionRun",
    "InterfaceProbe",
    "OutboxMessage",
    "OutboxStatus",
    "PatchPlan",
    "PatchStep",
    "Release",
    "ReleaseStep",
    "Outcome",
    "RunClaim",
    "RunStatus",
    "UTCDateTime",
    "utcnow",
]
