"""The contract registry: one contract per object and direction."""
from .inbound import INBOUND
from .outbound import OUTBOUND
from .rules import Contract, Rule

CONTRACTS: dict[str, Contract] = {c.name: c for c in (*INBOUND.values(), *OUTBOUND.values())}


def contract_for(obj: str, direction: str = "inbound") -> Contract:
    return CONTRACTS[f"{obj}.{direction}"]


__all__ = ["CONTRACTS", "Contract", "Rule", "contract_for", "INBOUND", "OUTBOUND"]
