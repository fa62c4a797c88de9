"""Lesson 00's setup check asks for what requirements.txt installs on this Python, and no more."""

import sys

from pgqueue.server import setupcheck


def test_a_requirement_for_another_python_is_not_asked_of_this_one():
    names = {req.name for req in setupcheck.requirements()}
    # requirements.txt installs tomli only before 3.11, where tomllib is not in the standard library
    assert ("tomli" in names) == (sys.version_info < (3, 11)), names
    checks = [setupcheck.check_package(req) for req in setupcheck.requirements()]
    missing = [str(check) for check in checks if not check.ok]
    assert missing == [], missing
