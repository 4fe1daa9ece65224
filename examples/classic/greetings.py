"""A helper module the greeter photon ships as an extra file."""


def greet(name: str) -> str:
    return f"Hello, {name}!"
