from __future__ import annotations

import inspect
import pickle

import pytest

from entai.shared.core import _errors as errors


def _error_classes() -> list[type[errors.EntaiError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.EntaiError)
    ]


def test_every_public_error_is_exported_and_named_error() -> None:
    classes = _error_classes()
    assert len(classes) == len(errors.__all__)
    for cls in classes:
        assert cls.__name__.endswith("Error")
        assert cls.__name__ in errors.__all__


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_details(cls: type[errors.EntaiError]) -> None:
    original = cls("view 'user' has no field 'age'", details={"field": "age", "n": 3})
    restored = pickle.loads(pickle.dumps(original))
    assert type(restored) is cls
    assert restored.message == original.message
    assert restored.details == {"field": "age", "n": 3}
    assert str(restored) == "view 'user' has no field 'age'"
    assert isinstance(restored, errors.EntaiError)


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in _error_classes()]
    assert len(codes) == len(set(codes))
