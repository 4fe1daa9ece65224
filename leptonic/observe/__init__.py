"""Seeing the platform: replica logs (metrics, series and alerts come later)."""
