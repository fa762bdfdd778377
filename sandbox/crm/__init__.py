"""Sandbox CRM: a local server faithful to the HubSpot CRM v3 subset in docs/architecture.md ("The CRM")."""
from .faults import KNOB_NAMES, KNOB_SPECS
from .server import SandboxServer, start_in_thread
from .store import API_ID_START, KNOWN_PROPERTIES, MODIFIED_PROP, OBJECT_TYPES, UNIQUE_PROPS, CrmStore, ms_to_iso

__all__ = ["API_ID_START", "CrmStore", "KNOB_NAMES", "KNOB_SPECS", "KNOWN_PROPERTIES", "MODIFIED_PROP",
           "OBJECT_TYPES", "SandboxServer", "UNIQUE_PROPS", "ms_to_iso", "start_in_thread"]
