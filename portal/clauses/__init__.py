"""特記事項 (contract security clauses): the catalogue in ``contracts/``, assembled per
engagement and vendor, edited within limits, generated as numbered, hashed PDF versions, and the
contract they were attached to."""
