"""A prediction is read back beside what was measured, and says which parts matched."""

from pgqueue.ui.predictions import NO_GUESS, read_back


def test_a_matching_word_is_right_whatever_its_case():
    assert read_back("  Nothing ", "nothing") == "you guessed '  Nothing '; it was 'nothing': right"


def test_a_wrong_guess_is_said_and_pointed_on():
    assert read_back("a few", "none").endswith("not what happened: the next cell says why")


def test_a_guess_of_several_parts_is_counted_part_by_part():
    line = read_back((5, 0), (5, 1))
    assert line == "you guessed (5, 0); it was (5, 1): 1 of 2 right: the next cell says why"
    assert read_back((True, "an error"), (True, "An error")).endswith("all right")


def test_numbers_match_exactly_or_within_a_factor():
    assert read_back(10, 12.3).endswith("not what happened: the next cell says why")
    assert read_back(10, 12.3, within=2).endswith("right (a number within a factor of 2 counts)")
    assert not read_back(10, 25.0, within=2).endswith(": right")


def test_no_guess_still_shows_the_measurement():
    assert read_back(None, 6) == f"{NO_GUESS}: it was 6"


def test_a_guess_with_the_wrong_number_of_parts_is_named():
    assert "the question has 2 part(s)" in read_back(3, (3, 4))


def test_a_boolean_is_not_matched_by_a_number():
    assert read_back(1, True).endswith("not what happened: the next cell says why")
    assert read_back("true", True).endswith("right")
