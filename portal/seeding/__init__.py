"""The large demo dataset (``flask --app wsgi seed-demo --size large``).

``large.seed_large`` loads one more organisation, 大規模デモ市, with thousands of vendor companies
and tens of thousands of assessments in bulk: SQLAlchemy Core statements, ids taken up front, no
ORM object per row (``bulk``). What it writes is what the services would have written: answers
valid for their questions and scores by the real rules (``answers``), 案件 in every state
(``plan``, ``assessments``), the register (``registers``), schedules by the real calendar
(``periodic``) and an audit trail chained as ``audit.record`` chains it (``bulk``).
"""
