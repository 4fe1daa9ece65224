"""The model lifecycle around the registry: what a training script calls to register a
fitted model with everything the platform needs to serve and watch it."""

from leptonic.models.sklearn import register_sklearn, sklearn_meta

__all__ = ["register_sklearn", "sklearn_meta"]
