"""The control-plane REST API under ``/api/v1`` (FastAPI)."""
