import pytest

from cleanroom import errors


def test_every_error_is_a_cleanroom_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, errors.CleanroomError)


def test_decryption_error_has_one_fixed_message() -> None:
    assert str(errors.DecryptionError()) == errors.DecryptionError.MESSAGE
    assert isinstance(errors.DecryptionError(), ValueError)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.DecryptionError(), 10),
        (errors.PolicyViolation("debug", "debug evidence"), 31),
        (errors.ConsentMissing("x"), 41),
        (errors.CleanroomError("x"), 1),
    ],
)
def test_exit_codes_pick_the_most_specific_class(error: errors.CleanroomError, code: int) -> None:
    assert errors.exit_code_for(error) == code
