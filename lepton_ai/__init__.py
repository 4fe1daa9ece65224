"""``from lepton_ai import LeptonAI``: the task SDK of leptonic under the name users know.

See ``leptonic.sdk`` for the task keys; ``LeptonAI("API_TOKEN").execute_task(task)``.
"""

from __future__ import annotations

from leptonic.sdk import JobFailed, LeptonAI

__all__ = ["JobFailed", "LeptonAI"]
