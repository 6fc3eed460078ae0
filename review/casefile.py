"""Cases as analysts use them, assembled for pages: the entity panel and merge tools of
the case page, and the case file (one printable page for audits and suspicious-activity
reports: the payment, the reasons, the timeline, the verdicts and the audit trail).

The case file is a page of its own: its style sheet and print button travel inside it (no
file fetched, so a saved copy or a PDF printed from it is complete), allowed by their
hashes in the page's own content security policy.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from pipelines.spreadsheet import safe_cell
from pipelines.store import ResultsStore
from review.queries import case_with_timeline, distinct_flags
from review.story import entity_story, story_summary
from review.templating import HERE

CASE_FILE_CSS = (HERE / "static" / "casefile.css").read_text()
PRINT_SCRIPT = (
    'document.getElementById("print").addEventListener("click", function () { window.print(); });'
)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: The case file's policy: nothing fetched, nothing run but its own print button.
CASE_FILE_CSP = (
    f"default-src 'none'; style-src {_hash(CASE_FILE_CSS)}; script-src {_hash(PRINT_SCRIPT)}; "
    "img-src data:; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def case_entities(case: dict) -> list[str]:
    """The entities a case is about: its own first, then any other its flags name (a
    merged case can hold more than one card)."""
    names = [case.get("entity"), *(f.get("entity") for f in case.get("flags", []))]
    return [n for n in dict.fromkeys(names) if n]


def casework_context(store: ResultsStore, case: dict) -> dict:
    """What the case page's entity panel and merge tools show (``casework`` in the
    templates): the entities with their tags and notes, the tag and note history, where
    the case stands among merges and the other open cases of its entities."""
    entities = case_entities(case)
    family = store.merge_family(case["id"])
    return {
        "casework": {
            "entities": entities,
            "profiles": store.entity_profiles(case["dataset"], entities),
            "entity_audit": store.entity_audit(case["dataset"], entities, limit=20),
            "family": family,
            "related": store.related_open_cases(case["id"], case["dataset"], entities)
            if case["status"] == "open"
            else [],
        }
    }


def case_file_context(store: ResultsStore, case_id: int, viewer: str) -> dict:
    """Everything the case file prints, oldest first where it is a history."""
    case = case_with_timeline(store, case_id)
    case["flags"] = distinct_flags(case["flags"])
    entities = case_entities(case)
    family = store.merge_family(case_id)
    story = entity_story(case["timeline"], case["record_ids"]) if case["timeline"] else None
    trail = [
        *store.case_audit([case_id, *family["absorbed"]]),
        *store.entity_audit(case["dataset"], entities),
    ]
    trail.sort(key=lambda entry: (entry.at, entry.id))
    return {
        "case": case,
        "entities": entities,
        "profiles": store.entity_profiles(case["dataset"], entities),
        "family": family,
        "story": story,
        "story_summary": story_summary(story) if story else None,
        "verdicts": store.verdict_history(case["record_ids"]),
        "audit": trail,
        "generated_at": datetime.now(UTC),
        "generated_by": viewer,
        "css": CASE_FILE_CSS,
        "print_script": PRINT_SCRIPT,
        "cell": safe_cell,
    }
