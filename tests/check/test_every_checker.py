"""What every checker of a learner's SQL does alike, each found through its corpus (tests/corpora): nothing
written is said before a lab is built, and SQL PostgreSQL refuses is quoted with its place in the text.

That each reference holds, and what each wrong answer is told, is test_corpora's: every corpus holds
its lesson's reference among its right answers.
"""

import pytest

from tests.check.test_corpora import MODULES, judge

# the judges that take SQL text (the capstone takes a dict of four pieces)
TEXT = {name: module for name, module in MODULES.items() if isinstance(module.WRONG[0].answer, str)}


@pytest.mark.parametrize("name", TEXT)
@pytest.mark.parametrize(
    ("text", "says"),
    [(None, "expected your SQL as a string, got NoneType"), ("  \n", "there is no SQL yet")],
    ids=["none", "blank"],
)
def test_nothing_written_yet_is_said_plainly(name, text, says):
    verdict = judge(TEXT[name], text)
    assert not verdict.holds and verdict.held == [] and len(verdict.wrong) == 1, str(verdict)
    assert says in verdict.wrong[0], str(verdict)


@pytest.mark.parametrize("name", TEXT)
def test_sql_postgresql_refuses_is_quoted_and_located(name):
    verdict = judge(TEXT[name], "-- my answer, not finished\nSELEC 1;")
    assert not verdict.holds and len(verdict.wrong) == 1, str(verdict)
    assert 'syntax error at or near "SELEC"' in verdict.wrong[0], str(verdict)
    assert "at line 2, column 1 of your SQL: 'SELEC 1;'" in verdict.wrong[0], str(verdict)
