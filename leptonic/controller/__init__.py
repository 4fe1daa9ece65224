"""Controllers: level-triggered loops that read spec + status, plan in core/, apply via runtime/."""
