"""An iris classifier: scikit-learn, fitted at start-up on the iris data that ships with
scikit-learn (nothing is downloaded), with dynamic batching."""

from __future__ import annotations

from pydantic import BaseModel, Field

from leptonic import Photon, handler


class Flower(BaseModel):
    sepal_length: float = Field(gt=0)
    sepal_width: float = Field(gt=0)
    petal_length: float = Field(gt=0)
    petal_width: float = Field(gt=0)


class Classifier(Photon):
    """Classifies iris flowers; concurrent requests are predicted in one call."""

    requirements = ["scikit-learn"]

    def init(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        data = load_iris()
        self.model = LogisticRegression(max_iter=500).fit(data.data, data.target)
        self.names = [str(n) for n in data.target_names]

    @handler(batch=32, max_wait_ms=5)
    def classify(self, flower: list[Flower]) -> list[str]:
        """The most likely species of each flower (each client sends one)."""
        rows = [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width]
                for f in flower]
        return [self.names[int(i)] for i in self.model.predict(rows)]
