"""Enrichers: fields from a CRM, IP databases or a plug-in, read as NAME.field (docs/enrichment.md)."""
