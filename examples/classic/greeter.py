"""A classic photon with extra_files: a sibling module shipped with it and imported."""

from leptonai.photon import Photon


class Greeter(Photon):
    extra_files = ["greetings.py"]

    def init(self):
        from greetings import greet

        self.greet = greet

    @Photon.handler("hello", example={"name": "world"})
    def hello(self, name: str = "world") -> str:
        return self.greet(name)


if __name__ == "__main__":
    Greeter().launch()
