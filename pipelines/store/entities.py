"""What analysts know about an entity (a card, a customer) beyond one case: tags and notes.

A case is one episode; the entity outlives it. A tag (``watch``, ``vip``, ``travel``) or a
note put on a card is shown on every case of that card, today's and next month's, and the
queue can be filtered by tag. Tags are normalised (lower case, single spaces) so ``VIP``
and ``vip`` are one tag; notes are append-only. Every change writes an audit entry (who,
what, before -> after, when) in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import sqlalchemy as sa

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository
from pipelines.store.errors import NotFound, ReviewError, aware
from pipelines.store.models import AuditEvent, EntityNote, EntityTag

#: The audit trail's ``entity`` for entries about an entity's tags and notes.
AUDIT_SUBJECT = "entity"
TAG_MAX = 40
NOTE_MAX = 4000
# A word character first: a tag never starts like a spreadsheet formula (=, +, -, @).
_TAG = re.compile(r"[^\W_][\w .:/#+-]*")


def normalise_tag(text: str) -> str:
    """A tag as stored: lower case, inner spaces collapsed; a clear error when it is not
    1-40 letters, digits, spaces or ``_ . : / # + -`` starting with a letter or digit."""
    tag = " ".join(str(text).split()).lower()
    if not tag or len(tag) > TAG_MAX or not _TAG.fullmatch(tag):
        raise ReviewError(
            f"tag {text!r}: use 1-{TAG_MAX} letters, digits, spaces or _ . : / # + -, "
            "starting with a letter or digit"
        )
    return tag


def audit_key(dataset: str, entity: str) -> str:
    """The audit trail's id for an entity: ``dataset:entity`` (hashed when too long for
    the column)."""
    key = f"{dataset}:{entity}"
    if len(key) <= 256:
        return key
    return f"{dataset[:128]}:sha256:{hashlib.sha256(entity.encode()).hexdigest()}"


class EntityRepository(Repository):
    """Tags and notes on entities (see the module docstring)."""

    def entity_profiles(self, dataset: str, entities: Sequence[str]) -> dict[str, dict]:
        """Per entity: its ``tags`` (sorted, with who added them and when) and its
        ``notes`` (newest first)."""
        names = list(dict.fromkeys(e for e in entities if e))
        out: dict[str, dict] = {name: {"tags": [], "notes": []} for name in names}
        if not names:
            return out
        with self.db.session() as session:
            for tag in session.scalars(
                sa.select(EntityTag)
                .where(EntityTag.dataset == dataset, EntityTag.entity.in_(names))
                .order_by(EntityTag.tag)
            ):
                out[tag.entity]["tags"].append(
                    {"tag": tag.tag, "added_by": tag.added_by, "added_at": aware(tag.added_at)}
                )
            for note in session.scalars(
                sa.select(EntityNote)
                .where(EntityNote.dataset == dataset, EntityNote.entity.in_(names))
                .order_by(EntityNote.id.desc())
            ):
                out[note.entity]["notes"].append(
                    {
                        "id": note.id,
                        "body": note.body,
                        "author": note.author,
                        "created_at": aware(note.created_at),
                    }
                )
        return out

    def entity_tags(self, dataset: str, entity: str) -> list[str]:
        with self.db.session() as session:
            return self._tags(session, dataset, entity)

    def add_tag(self, dataset: str, entity: str, tag: str, user: str) -> list[str]:
        """Tag the entity; returns its tags. A tag it already has changes nothing (and
        writes no audit entry)."""
        tag = normalise_tag(tag)
        _check_entity(entity)
        with self.db.session() as session:
            before = self._tags(session, dataset, entity)
            if tag in before:
                return before
            session.add(EntityTag(dataset=dataset, entity=entity, tag=tag, added_by=user))
            after = sorted([*before, tag])
            record_audit(
                session,
                user,
                "entity.tag_added",
                AUDIT_SUBJECT,
                audit_key(dataset, entity),
                before={"tags": ", ".join(before) or None},
                after={"tags": ", ".join(after)},
                detail={"dataset": dataset, "entity": entity, "tag": tag},
            )
            return after

    def remove_tag(self, dataset: str, entity: str, tag: str, user: str) -> list[str]:
        """Take a tag off the entity; returns its tags. :class:`NotFound` when it has no
        such tag."""
        tag = " ".join(str(tag).split()).lower()
        with self.db.session() as session:
            before = self._tags(session, dataset, entity)
            if tag not in before:
                raise NotFound(f"{entity} has no tag {tag!r}")
            session.execute(
                sa.delete(EntityTag).where(
                    EntityTag.dataset == dataset, EntityTag.entity == entity, EntityTag.tag == tag
                )
            )
            after = [t for t in before if t != tag]
            record_audit(
                session,
                user,
                "entity.tag_removed",
                AUDIT_SUBJECT,
                audit_key(dataset, entity),
                before={"tags": ", ".join(before)},
                after={"tags": ", ".join(after) or None},
                detail={"dataset": dataset, "entity": entity, "tag": tag},
            )
            return after

    def add_note(self, dataset: str, entity: str, body: str, user: str) -> dict:
        """Add a note about the entity (notes are never edited or deleted)."""
        text = str(body).strip()
        if not text:
            raise ReviewError("a note needs some text")
        if len(text) > NOTE_MAX:
            raise ReviewError(f"a note is at most {NOTE_MAX:,} characters (got {len(text):,})")
        _check_entity(entity)
        with self.db.session() as session:
            note = EntityNote(dataset=dataset, entity=entity, body=text, author=user)
            session.add(note)
            session.flush()
            record_audit(
                session,
                user,
                "entity.note_added",
                AUDIT_SUBJECT,
                audit_key(dataset, entity),
                before=None,
                after={"note": text},
                detail={"dataset": dataset, "entity": entity, "note_id": note.id},
            )
            return {"id": note.id, "body": text, "author": user}

    def entity_audit(self, dataset: str, entities: Sequence[str], limit: int = 200) -> list:
        """The audit entries about these entities' tags and notes, newest first."""
        keys = [audit_key(dataset, e) for e in dict.fromkeys(entities) if e]
        if not keys:
            return []
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(AuditEvent)
                    .where(AuditEvent.entity == AUDIT_SUBJECT, AuditEvent.entity_id.in_(keys))
                    .order_by(AuditEvent.id.desc())
                    .limit(limit)
                )
            )

    @staticmethod
    def _tags(session, dataset: str, entity: str) -> list[str]:
        return list(
            session.scalars(
                sa.select(EntityTag.tag)
                .where(EntityTag.dataset == dataset, EntityTag.entity == entity)
                .order_by(EntityTag.tag)
            )
        )


def _check_entity(entity: str) -> None:
    if not entity or len(entity) > 256:
        raise ReviewError("tags and notes need an entity (a card or customer id)")
