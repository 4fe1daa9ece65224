"""Backends that really start and stop replicas: ``local`` (subprocesses), ``fake`` (tests)."""
