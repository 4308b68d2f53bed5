"""What a user types for a job (id, name, age, gender): both sides of every rule, at the edges,
and the reason code and sentence each refusal carries."""

from __future__ import annotations

import pytest

from steps.core.errors import InputError
from steps.core.job import (
    GENDERS,
    MAX_NAME,
    SCHEMA_VERSION,
    Status,
    new_record,
    parse_age,
    validate_gender,
    validate_job_id,
    validate_name,
)


def refused(check, value) -> InputError:
    with pytest.raises(InputError) as e:
        check(value)
    return e.value


# ---- job ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("job_id", ["a", "7", "Z9", "job-2024_11.30", "a.b", "x" * 63,
                                    "a" + "-._" * 20 + "b"])
def test_good_job_ids_are_kept_as_given(job_id):
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize("job_id", ["x" * 64, ".a", "a.", "_a", "a_", "a..b", "a/b", "a b", "ä",
                                    "a\nb", ""])
def test_bad_job_ids_say_what_an_id_may_be(job_id):
    error = refused(validate_job_id, job_id)
    assert error.reason == "bad_job_id"
    assert error.message == (
        f"Job id {job_id!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
        "starting and ending with a letter or digit.")


def test_a_long_bad_job_id_is_quoted_cut_short():
    error = refused(validate_job_id, "y" * 300)
    assert f"Job id {'y' * 80!r} is not allowed" in error.message


# ---- names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["A", "李", "Ян", "x" * MAX_NAME, "Mary-Jane O'Neil", "Zoë"])
def test_one_to_forty_characters_are_a_name(name):
    assert validate_name(name) == name


def test_names_are_trimmed_and_composed():
    assert validate_name("  Zoe\u0308 \t") == "Zo\u00eb"        # NFC: e + combining diaeresis
    assert validate_name("e\u0301" * MAX_NAME) == "\u00e9" * MAX_NAME  # 80 code points, 40 letters


@pytest.mark.parametrize("char,category", [
    ("\x00", "Cc"), ("\x07", "Cc"), ("\x7f", "Cc"), ("\u200b", "Cf"), ("\u202e", "Cf"),
    ("\u00ad", "Cf"), ("\ud800", "Cs"), ("\ue000", "Co"), ("\U000f0000", "Co"),
    ("\u2028", "Zl"), ("\u2029", "Zp")])
def test_control_and_invisible_characters_are_refused(char, category):
    import unicodedata

    assert unicodedata.category(char) == category
    error = refused(validate_name, f"Mi{char}a")
    assert error.reason == "bad_name"
    assert error.message == ("The child's name contains control or invisible characters; "
                             "type the name as plain letters.")


@pytest.mark.parametrize("name,length", [("", 0), ("   ", 0), (None, 0), ("x" * (MAX_NAME + 1), 41),
                                         ("\u00e9" * 41, 41)])
def test_empty_and_long_names_are_refused_with_the_length(name, length):
    error = refused(validate_name, name)
    assert error.reason == "bad_name"
    assert error.message == (f"The child's name must be 1-40 characters long (got {length}); "
                             "give a shorter or non-empty name.")


# ---- ages --------------------------------------------------------------------------------

@pytest.mark.parametrize("age,value", [("0", 0), ("17", 17), (0, 0), (17, 17), (" 5 ", 5), ("09", 9)])
def test_ages_0_to_17_are_accepted(age, value):
    assert parse_age(age) == value


@pytest.mark.parametrize("age,value", [("-1", -1), ("18", 18), (18, 18), (-1, -1), ("120", 120)])
def test_ages_outside_0_17_are_refused(age, value):
    error = refused(parse_age, age)
    assert error.reason == "bad_age"
    assert error.message == f"Age {value} is outside 0-17; give the child's age in years, 0-17."


@pytest.mark.parametrize("age", ["five", "4.5", "", "1e1", "x" * 50])
def test_ages_that_are_not_whole_numbers_are_refused(age):
    error = refused(parse_age, age)
    assert error.reason == "bad_age"
    assert error.message == (f"Age {age[:20]!r} is not a whole number; "
                             "give the child's age in years, 0-17.")


# ---- gender ------------------------------------------------------------------------------

@pytest.mark.parametrize("gender", GENDERS)
def test_each_gender_is_accepted(gender):
    assert validate_gender(gender) == gender


@pytest.mark.parametrize("gender", ["other", "Girl", "", "x" * 30])
def test_other_genders_are_refused_naming_the_choices(gender):
    error = refused(validate_gender, gender)
    assert error.reason == "bad_gender"
    assert error.message == (f"Gender {gender[:20]!r} is not one of girl, boy, unspecified; "
                             "pick one of those.")


def test_the_genders_are_the_ones_the_texts_select_on():
    assert GENDERS == ("girl", "boy", "unspecified")


# ---- the new record the analyze step makes from them ------------------------------------

def test_a_new_record_holds_what_was_typed_trimmed_and_nothing_else():
    record = new_record("j1", "/books/b", "uploads/j1/photo.jpg", "  Mia  ", " 5 ", "girl")
    assert record.model_dump(exclude={"created_at", "updated_at"}) == {
        "schema_version": SCHEMA_VERSION, "job_id": "j1", "book_id": None, "book_uri": "/books/b",
        "photo_key": "uploads/j1/photo.jpg", "photo_sha256": None, "photo_source": None,
        "child_name": "Mia", "child_age": 5, "child_gender": "girl", "language": "",
        "dedication": "", "status": Status.ANALYZING, "status_history": [], "analysis": None,
        "artifacts": [], "error": None, "queued": None, "events": [], "notify_url": ""}


def test_a_new_record_keeps_the_optional_fields_given():
    record = new_record("j2", "/b", "uploads/j2/p.jpg", "Ян", 17, "boy",
                        photo_source="s3://shop/p.jpg", language="uk", dedication="For you")
    assert (record.photo_source, record.language, record.dedication) == (
        "s3://shop/p.jpg", "uk", "For you")
    assert (record.child_name, record.child_age, record.child_gender) == ("Ян", 17, "boy")


@pytest.mark.parametrize("age", ["five", "18", -1, ""])
def test_a_new_record_with_a_bad_age_exists_without_one(age):
    """The record is made first, so that the refusal can be recorded on it."""
    assert new_record("j3", "/b", "p", "Mia", age, "girl").child_age is None


def test_a_new_record_keeps_a_bad_name_cut_to_200_characters():
    assert new_record("j4", "/b", "p", " " + "x" * 300, 0, "x").child_name == "x" * 200
    assert new_record("j4", "/b", "p", 42, 0, "x").child_name == "42"   # type: ignore[arg-type]
