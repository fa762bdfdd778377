"""Ingestion: CRM (HubSpot API), ERP database and ERP file exports into the warehouse `raw` schema."""
