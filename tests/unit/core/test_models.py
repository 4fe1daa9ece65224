from __future__ import annotations

import pytest

from leptonic.core.models import PhotonRef, check_name, is_valid_name
from leptonic.errors import InvalidInput


@pytest.mark.parametrize("name", ["a", "echo", "my-model-2", "a" * 40])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Echo", "2echo", "echo-", "e_cho", "a" * 41, "é", "a b"])
def test_invalid_names_say_the_rule(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(InvalidInput, match="lowercase letters, digits and '-'"):
        check_name(name, "deployment name")


@pytest.mark.parametrize(("text", "name", "version", "builtin"), [
    ("echo", "echo", None, False),
    ("echo@2", "echo", 2, False),
    ("echo@v3", "echo", 3, False),
    ("builtin:echo", "echo", None, True),
])
def test_photon_ref(text: str, name: str, version: int | None, builtin: bool) -> None:
    ref = PhotonRef.parse(text)
    assert (ref.name, ref.version, ref.builtin) == (name, version, builtin)
    assert str(ref) == text.replace("@v", "@")


@pytest.mark.parametrize("text", ["echo@", "echo@0", "echo@vx", "Echo@1", "builtin:"])
def test_bad_photon_ref(text: str) -> None:
    with pytest.raises(InvalidInput):
        PhotonRef.parse(text)
