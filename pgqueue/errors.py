"""The kit's one exception: a single line saying what was wrong, with the offending value."""


class PgQueueError(Exception):
    """A problem the learner can fix; the message says what and how, in one line."""
