"""What a run recorded of the decision that skipped or stopped it, and
where ``cronpolicy why`` looks for the change behind it: the two shapes a
rule's ``cause`` facet (policy.py) reads and returns.

Apart from policy.py because only ``why`` asks: making their classes cost
a start about 25 microseconds, measured, for nothing.
"""

from cronpolicy.shapes import shape

#: What a run recorded of the decision that skipped or stopped it, as
#: ``why`` hands it to the rule that made it: ``code``, ``block``,
#: ``policy_id``, ``window_id`` (of the stop, for a stop); ``stopped``: a
#: run interrupted, not a start skipped; ``decided_at``: the moment of the
#: decision (the start of a skip, the end of a stop); ``ended_at``: the
#: run's end (its start when it has none).
Recorded = shape("Recorded", "code block policy_id window_id stopped decided_at ended_at")

#: Where ``why`` finds the change behind a decision: the newest audit entry
#: of ``table`` (of its row ``row_id``; None: of any row) made up to
#: ``moment`` that ``where`` accepts (a function of the entry; None: any).
Cause = shape("Cause", "table row_id moment where", defaults=(None,))
