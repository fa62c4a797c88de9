"""The map of the kit says how long each lesson takes."""

from pgqueue import curriculum


def test_every_lesson_says_how_many_minutes_it_takes():
    short = [lesson.file for lesson in curriculum.LESSONS if not 5 <= lesson.minutes <= 90]
    assert not short, f"lessons without a believable time (5 to 90 minutes): {short}"


def test_the_map_shows_the_minutes():
    table = curriculum.kit_map()
    assert table["minutes"].tolist() == [lesson.minutes for lesson in curriculum.LESSONS]
    assert table.loc["00-start-here", "minutes"] == curriculum.LESSONS[0].minutes
