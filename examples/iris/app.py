"""An iris classifier with dynamic batching: a scikit-learn model fitted at start-up on
the iris data that ships with scikit-learn (nothing is downloaded).

Each client sends one flower; the runner gathers concurrent requests into one call of
``classify`` with a list, so the model predicts many rows at once.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from leptonic import Photon, handler


class Flower(BaseModel):
    """Measurements of one iris flower, in centimetres."""

    sepal_length: float = Field(gt=0)
    sepal_width: float = Field(gt=0)
    petal_length: float = Field(gt=0)
    petal_width: float = Field(gt=0)


class Prediction(BaseModel):
    species: str
    probability: float


class Iris(Photon):
    """Classifies iris flowers into setosa, versicolor or virginica."""

    requirements = ["scikit-learn"]

    def init(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        data = load_iris()
        self.model = LogisticRegression(max_iter=500).fit(data.data, data.target)
        self.names = [str(n) for n in data.target_names]

    @handler(batch=32, max_wait_ms=5)
    def classify(self, flower: list[Flower]) -> list[Prediction]:
        """The most likely species of each flower, with its probability."""
        rows = [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width]
                for f in flower]
        probabilities = self.model.predict_proba(rows)
        return [Prediction(species=self.names[int(p.argmax())], probability=float(p.max()))
                for p in probabilities]

    @handler
    def species(self) -> list[str]:
        """The species the model knows."""
        return self.names
