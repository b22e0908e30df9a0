"""API objects → rows of the 20 warehouse tables (spec §3).

Every API field is a key, a mapped column, a child list, an ignored field or unknown; unknown
fields and values that cannot be coerced go to the row's jsonb ``extra`` and are never dropped.
Rows are tuples of plain values in ``Table.columns`` order, handed to a ``sink`` that has
``add(table, row)`` and ``replace(table, parent_key)``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec

from etlkit.common.errors import BadInputError
from etlkit.enderturing import tables as t

BEGINNING_OF_TIME = "0001-01-01 00:00:00"
AUTOMATED_REVIEWER_ID = 0
_POINT_SKIP = frozenset({"id"})  # a score point's own id is not kept
SYNTHETIC_USER_0 = {
    "id": 0,
    "email": "ender.turing@enderturing.com",
    "is_active": False,
    "is_superuser": False,
    "full_name": "Ender Turing",
    "invite_expires": "1900-01-01T00:00:00",
}


class Sink(Protocol):
    def add(self, table: t.Table, row: tuple) -> None: ...

    def replace(self, table: t.Table, parent_key: Any) -> None: ...


class Uncoercible(ValueError):
    pass


# ---- coercion -------------------------------------------------------------------------------


INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def to_bigint(value: Any) -> int | None:
    number = _integral(value)
    if number is not None and not INT64[0] <= number <= INT64[1]:
        raise Uncoercible(value)
    return number


def to_int(value: Any) -> int | None:
    """An ``integer`` column's value: out of int32 range is uncoercible (kept in ``extra``), not a COPY error."""
    number = _integral(value)
    if number is not None and not INT32[0] <= number <= INT32[1]:
        raise Uncoercible(value)
    return number


def _integral(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Uncoercible(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise Uncoercible(value) from None
            if number.is_integer():
                return int(number)
    raise Uncoercible(value)


def to_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Uncoercible(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise Uncoercible(value) from None
    raise Uncoercible(value)


def to_numeric(value: Any) -> int | float | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else to_float(value)


_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise Uncoercible(value)


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Uncoercible(value)


def to_timestamp(value: Any) -> str | None:
    """ISO 8601 → UTC wall clock rounded to the nearest second (half up), as text for COPY."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Uncoercible(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Uncoercible(value) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    rounded = moment.replace(microsecond=0)
    if moment.microsecond >= 500_000:
        rounded += timedelta(seconds=1)
    return rounded.isoformat(sep=" ")


def to_uuid(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise Uncoercible(value) from None


_encode = msgspec.json.Encoder().encode


def _dumps(value: Any) -> str:
    try:
        return _encode(value).decode("utf-8")
    except (TypeError, OverflowError):  # e.g. integers beyond 64 bits: the standard encoder copes
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def to_json(value: Any) -> str:
    """Any JSON value as jsonb text; NUL characters removed (PostgreSQL rejects them)."""
    if not value and isinstance(value, dict):
        return "{}"
    text = _dumps(value)
    return _ESCAPED_NUL.sub(r"\1", text) if "\\u0000" in text else text


INT, BIGINT, FLOAT, NUMERIC, BOOL, TEXT, TS, UUID, JSON = (
    to_int,
    to_bigint,
    to_float,
    to_numeric,
    to_bool,
    to_text,
    to_timestamp,
    to_uuid,
    to_json,
)
Field = tuple[str, Callable[[Any], Any]]  # (column, coercion)
_KEY_RULES = {to_int: "a 32-bit integer id", to_bigint: "a 64-bit integer", to_uuid: "a UUID"}


class Transformer:
    """Feeds rows into a sink and counts what it had to tolerate (coercions, duplicates, skips)."""

    def __init__(self, sink: Sink):
        self.sink = sink
        self.warnings: Counter[str] = Counter()

    # ---- generic mapping -------------------------------------------------------------------

    def _map(
        self, table: t.Table, obj: dict, fields: dict[str, Field], skip: frozenset[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Mapped fields coerced into ``values`` (absent ones stay absent = NULL); the rest to ``extra``."""
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, raw in obj.items():
            spec = fields.get(name)
            if spec is None:
                if name not in skip:
                    extra[name] = raw
                continue
            try:
                values[spec[0]] = spec[1](raw)
            except Uncoercible:
                extra[name] = raw
                self.warnings[f"{table.name}.{name}: uncoercible"] += 1
        return values, extra

    def _key(self, coerce: Callable[[Any], Any], obj: dict, field: str, where: str) -> Any:
        """The key ``field`` of ``obj``; a clear error naming where, the field and the rule, never
        the object's content (sessions and dictionaries hold personal data)."""
        raw = obj.get(field) if isinstance(obj, dict) else None
        try:
            value = coerce(raw)
        except Uncoercible:
            value = None
        if value is None:
            if not isinstance(obj, dict):
                found = f"the item is a {type(obj).__name__}, not an object"
            else:
                found = "absent" if field not in obj else f"a {type(raw).__name__} value"
            raise BadInputError(
                f"{where}: key field {field!r} is missing or invalid: must be {_KEY_RULES.get(coerce, 'a valid key')}, "
                f"found {found} (content not shown: personal data)"
            )
        return value

    def _row(self, table: t.Table, values: dict[str, Any], extra: dict[str, Any] | None = None) -> tuple:
        if extra is None:
            extra = {}
        row = tuple(map(values.get, table.value_columns))
        return row + (to_json(extra),) if table.has_extra else row

    def _child_row(
        self,
        table: t.Table,
        item: dict,
        fields: dict[str, Field],
        parent: dict[str, Any],
        keys: dict[str, Any],
        skip: frozenset[str] = frozenset(),
    ) -> tuple:
        """A row of a list nested in a parent item: the parent's other fields go to ``extra.parent``."""
        values, extra = self._map(table, item, fields, skip)
        if parent:
            extra["parent"] = parent
        values |= keys
        return self._row(table, values, extra)

    def _emit_unique(self, table: t.Table, rows: Iterable[tuple]) -> None:
        """Last occurrence of a key wins; duplicates are counted."""
        width = len(table.key)
        unique: dict[tuple, tuple] = {}
        for row in rows:
            key = row[:width]
            if key in unique:
                self.warnings[f"{table.name}: duplicate key"] += 1
            unique[key] = row
        for row in unique.values():
            self.sink.add(table, row)

    # ---- dictionaries (§3.2) --------------------------------------------------------------

    def agents(self, items: list[dict]) -> None:
        fields = {"name": ("name", TEXT), "phone_number": ("phone_number", TEXT)}
        fields |= {"is_active": ("is_active", BOOL), "deactivated_at": ("deactivated_at", TS)}
        skip = frozenset({"id", "groups", "phone_number_aliases", "user", "reactions"})
        group_fields = {"start_dt": ("start_dt", TS)}
        rows, links = [], []
        for position, agent in enumerate(items):
            agent_id = self._key(INT, agent, "id", f"/agents[{position}]")
            values, extra = self._map(t.AGENTS, agent, fields, skip)
            rows.append(self._row(t.AGENTS, {"id": agent_id, **values}, extra))
            groups = agent.get("groups")
            if groups is None:
                continue
            self.sink.replace(t.AGENT_GROUP_ASSOCIATIONS, agent_id)
            for group in groups:
                group_id = self._key(INT, group, "group_id", f"/agents[{position}].groups")
                gvalues, gextra = self._map(
                    t.AGENT_GROUP_ASSOCIATIONS, group, group_fields, frozenset({"group_id"})
                )
                start = gvalues.get("start_dt") or BEGINNING_OF_TIME
                links.append(
                    self._row(
                        t.AGENT_GROUP_ASSOCIATIONS,
                        {"group_id": group_id, "agent_id": agent_id, "start_dt": start},
                        gextra,
                    )
                )
        self._emit_unique(t.AGENTS, rows)
        self._emit_unique(t.AGENT_GROUP_ASSOCIATIONS, links)

    def _with_labels(
        self, table: t.Table, link: t.Table, endpoint: str, items: list[dict], fields: dict, skip: set
    ) -> None:
        rows, links = [], []
        for position, item in enumerate(items):
            item_id = self._key(INT, item, "id", f"{endpoint}[{position}]")
            values, extra = self._map(table, item, fields, frozenset(skip | {"id", "labels"}))
            rows.append(self._row(table, {"id": item_id, **values}, extra))
            labels = item.get("labels")
            if labels is None:
                continue
            self.sink.replace(link, item_id)
            for label in labels:
                label_id = self._key(INT, label, "id", f"{endpoint}[{position}].labels")
                links.append((item_id, label_id))
        self._emit_unique(table, rows)
        self._emit_unique(link, links)

    def categories(self, items: list[dict]) -> None:
        fields = {"name": ("name", TEXT), "filter_data": ("filter_data", TEXT), "position": ("position", INT)}
        fields |= {"created_at": ("created_at", TS), "updated_at": ("updated_at", TS)}
        self._with_labels(t.CATEGORIES, t.CATEGORY_LABELS, "/categories", items, fields, set())

    def tags(self, items: list[dict]) -> None:
        fields = {"name": ("name", TEXT), "type": ("type", TEXT), "team_id": ("team_id", INT)}
        fields |= {"is_archived": ("is_archived", BOOL), "archived_by_id": ("archived_by_id", INT)}
        fields |= {"archived_at": ("archived_at", TS)}
        self._with_labels(t.TAGS, t.TAG_LABELS, "/tags", items, fields, {"words", "phrases", "color"})

    def _simple(self, table: t.Table, endpoint: str, items: list[dict], fields: dict, skip: set) -> None:
        rows = []
        for position, item in enumerate(items):
            item_id = self._key(INT, item, "id", f"{endpoint}[{position}]")
            values, extra = self._map(table, item, fields, frozenset(skip | {"id"}))
            rows.append(self._row(table, {"id": item_id, **values}, extra))
        self._emit_unique(table, rows)

    def groups(self, items: list[dict]) -> None:
        fields = {
            "name": ("name", TEXT),
            "scorecard_id": ("scorecard_id", INT),
            "is_default": ("is_default", BOOL),
        }
        self._simple(t.GROUPS, "/agent-groups", items, fields, {"additional_scorecards"})

    def labels(self, items: list[dict]) -> None:
        self._simple(t.LABELS, "/labels", items, {"text": ("text", TEXT)}, {"color"})

    def users(self, items: list[dict]) -> None:
        fields = {
            name: (name, kind) for name, kind in (("email", TEXT), ("full_name", TEXT), ("language", TEXT))
        }
        fields |= {"is_active": ("is_active", BOOL), "is_superuser": ("is_superuser", BOOL)}
        fields |= {"agent_id": ("agent_id", INT), "agent_group_id": ("agent_group_id", INT)}
        fields |= {"uuid": ("uuid", UUID), "invite_expires": ("invite_expires", TS)}
        has_user_0 = any(isinstance(u, dict) and u.get("id") in (0, "0") for u in items)
        users = items if has_user_0 else [SYNTHETIC_USER_0, *items]
        self._simple(t.USERS, "/users", users, fields, {"role_ids", "permissions"})

    def scorecards(self, items: list[dict]) -> None:
        card_fields = {"name": ("name", TEXT), "type": ("type", TEXT), "na_behavior": ("na_behavior", TEXT)}
        for flag in ("count_critical_scores", "is_automated", "is_protected", "is_default", "is_archived"):
            card_fields[flag] = (flag, BOOL)
        category_fields = {"name": ("name", TEXT), "sort_order": ("sort_order", INT)}
        point_fields = {"name": ("name", TEXT), "description": ("description", TEXT)}
        point_fields |= {"sort_order": ("sort_order", INT), "critical": ("critical", BOOL)}
        point_fields |= {
            "max_score": ("max_score", INT),
            "allow_partial_score": ("allow_partial_score", BOOL),
        }
        cards, categories, points = [], [], []
        for position, card in enumerate(items):
            where = f"/scorecards[{position}]"
            card_id = self._key(INT, card, "id", where)
            values, extra = self._map(
                t.SCORECARDS, card, card_fields, frozenset({"id", "categories", "team_ids"})
            )
            cards.append(self._row(t.SCORECARDS, {"id": card_id, **values}, extra))
            for category in card.get("categories") or []:
                category_id = self._key(INT, category, "id", f"{where}.categories")
                owner = self._optional_int(category, "scorecard_id", card_id)
                skip = frozenset({"id", "scorecard_id", "points"})
                cvalues, cextra = self._map(t.SCORECARD_CATEGORIES, category, category_fields, skip)
                categories.append(
                    self._row(
                        t.SCORECARD_CATEGORIES, {"id": category_id, "scorecard_id": owner, **cvalues}, cextra
                    )
                )
                for point in category.get("points") or []:
                    point_id = self._key(INT, point, "id", f"{where}.categories.points")
                    skip = frozenset({"id", "scorecard_id", "category_id", "score_values", "user_data"})
                    pvalues, pextra = self._map(t.SCORECARD_POINTS, point, point_fields, skip)
                    pvalues |= {
                        "id": point_id,
                        "scorecard_id": self._optional_int(point, "scorecard_id", owner),
                        "category_id": self._optional_int(point, "category_id", category_id),
                    }
                    points.append(self._row(t.SCORECARD_POINTS, pvalues, pextra))
        self._emit_unique(t.SCORECARDS, cards)
        self._emit_unique(t.SCORECARD_CATEGORIES, categories)
        self._emit_unique(t.SCORECARD_POINTS, points)

    def _optional_int(self, obj: dict, field: str, fallback: int) -> int:
        try:
            value = to_int(obj.get(field))
        except Uncoercible:
            value = None
        return fallback if value is None else value

    # ---- sessions (§3.3) ------------------------------------------------------------------

    _SESSION_FIELDS: dict[str, Field] = (
        {name: (name, TEXT) for name in t.SESSION_TEXT}
        | {name: (name, INT) for name in t.SESSION_INT}
        | {name: (name, FLOAT) for name in t.SESSION_FLOAT}
        | {name: (name, JSON) for name in t.SESSION_JSON}
        | {"start_dt": ("start_dt", TS), "is_processed": ("is_processed", BOOL)}
        | {"caller_prev_session_id": ("caller_prev_session_id", UUID)}
    )
    _SESSION_SKIP = frozenset(
        [
            "id",
            "tags",
            "categories",
            "reviewers",
            "crm_statuses",
            "end_dt",
            "created_at",
            "updated_at",
            "compliance_matches",
            "ptp_kept_prediction",
            "comment_author_ids",
            "group",
            "agent",
            "agent_name",
            "category_ids",
            "emotions",
            "activity",
            "sentiments",
            "events_call_id",
            "low_quality",
            "transcripts",
        ]
    )
    _MATCH_FIELDS: dict[str, Field] = {
        "score": ("score", FLOAT),
        "matched_corpus_text": ("matched_corpus_text", TEXT),
        "is_agent": ("is_agent", BOOL),
        "transcript_id": ("transcript_id", BIGINT),
        "matched_query_text": ("matched_query_text", TEXT),
        "meta": ("meta", JSON),
    }

    def session(self, obj: dict, where: str) -> str:
        """One session object → ``sessions`` row plus its four embedded child lists; returns the id."""
        session_id = self._key(to_uuid, obj, "id", where)
        values, extra = self._map(t.SESSIONS, obj, self._SESSION_FIELDS, self._SESSION_SKIP)
        self.sink.add(t.SESSIONS, self._row(t.SESSIONS, {"id": session_id, **values}, extra))
        where = f"session {session_id}"
        categories, reviewers = obj.get("categories"), obj.get("reviewers")
        verified, reviewed = ("is_verified", BOOL), ("last_reviewed_at", TS)
        self._session_links(
            t.SESSIONS_CATEGORIES, session_id, categories, f"{where}: categories", verified, frozenset({"id"})
        )
        self._session_links(
            t.SESSIONS_REVIEWERS,
            session_id,
            reviewers,
            f"{where}: reviewers",
            reviewed,
            frozenset({"id", "name"}),
        )
        self._session_crm_statuses(session_id, obj.get("crm_statuses"))
        self._session_tags(session_id, obj.get("tags"), where)
        return session_id

    def _session_links(
        self,
        table: t.Table,
        session_id: str,
        items: list | None,
        where: str,
        column: tuple[str, Any],
        skip: frozenset[str],
    ) -> None:
        """Children keyed by the item's ``id``, with one mapped ``column`` (name, kind); the other
        fields not in ``skip`` go to ``extra``."""
        if items is None:
            return
        self.sink.replace(table, session_id)
        name = column[0]
        fields = {name: column}
        rows = []
        for position, item in enumerate(items):
            child_id = self._key(INT, item, "id", f"{where}[{position}]")
            values, extra = self._map(table, item, fields, skip)
            rows.append((session_id, child_id, values.get(name), to_json(extra)))
        self._emit_unique(table, rows)

    def _session_crm_statuses(self, session_id: str, items: list | None) -> None:
        if items is None:
            return
        self.sink.replace(t.SESSIONS_CRM_STATUSES, session_id)
        statuses: dict[str, dict] = {}
        for item in items:
            extra: dict = {}
            if isinstance(item, dict):
                status = item.get("crm_status")
                extra = {k: v for k, v in item.items() if k != "crm_status"}
            else:
                status = item
            if isinstance(status, bool) or not isinstance(status, str | int | float):
                self.warnings["sessions_crm_statuses: item without crm_status skipped"] += 1
                continue
            status = to_text(status)
            if status in statuses:
                self.warnings["sessions_crm_statuses: duplicate key"] += 1
            statuses[status] = extra
        for status, extra in statuses.items():
            self.sink.add(t.SESSIONS_CRM_STATUSES, (session_id, status, to_json(extra)))

    def _session_tags(self, session_id: str, items: list | None, where: str) -> None:
        if items is None:
            return
        self.sink.replace(t.SESSIONS_TAGS, session_id)
        rows = []
        for position, item in enumerate(items):
            tag_id = self._key(INT, item, "id", f"{where}: tags[{position}]")
            parent = {k: v for k, v in item.items() if k not in ("id", "match")}
            matches = item.get("match") or [{}]
            for match_no, match in enumerate(matches):
                keys = {"session_id": session_id, "tag_id": tag_id, "match_no": match_no}
                rows.append(self._child_row(t.SESSIONS_TAGS, match, self._MATCH_FIELDS, parent, keys))
        self._emit_unique(t.SESSIONS_TAGS, rows)

    # ---- per-session endpoints (§1.7) -----------------------------------------------------

    def scores(self, session_id: str, sheets: Any) -> None:
        self.sink.replace(t.SESSIONS_SCORES, session_id)
        fields = {"scorecard_point_id": ("scorecard_point_id", INT), "score": ("score", NUMERIC)}
        fields |= {"comment": ("comment", TEXT)}
        rows = []
        for sheet in _listed(sheets, f"/sessions/{session_id}/scores"):
            scorecard_id = self._key(INT, sheet, "scorecard_id", f"/sessions/{session_id}/scores")
            reviewer_id = self._optional_int(sheet, "reviewer_id", AUTOMATED_REVIEWER_ID)
            skip = {"session_id", "scorecard_id", "reviewer_id", "point_scores"}
            parent = {k: v for k, v in sheet.items() if k not in skip}
            for point in sheet.get("point_scores") or []:
                self._key(INT, point, "scorecard_point_id", f"/sessions/{session_id}/scores")
                keys = {"session_id": session_id, "scorecard_id": scorecard_id, "reviewer_id": reviewer_id}
                rows.append(self._child_row(t.SESSIONS_SCORES, point, fields, parent, keys, _POINT_SKIP))
        self._emit_unique(t.SESSIONS_SCORES, rows)

    def summaries(self, session_id: str, items: Any) -> None:
        self.sink.replace(t.SESSIONS_SUMMARIES, session_id)
        fields = {"id": ("summary_id", INT), "text": ("text", TEXT)}
        fields |= {"created_at": ("created_at", TS), "updated_at": ("updated_at", TS)}
        for number, item in enumerate(_listed(items, f"/sessions/{session_id}/summary")):
            values, extra = self._map(t.SESSIONS_SUMMARIES, item, fields, frozenset({"session_id"}))
            values |= {"session_id": session_id, "summary_no": number}
            self.sink.add(t.SESSIONS_SUMMARIES, self._row(t.SESSIONS_SUMMARIES, values, extra))

    def comments(self, session_id: str, items: Any) -> None:
        self.sink.replace(t.SESSIONS_COMMENTS, session_id)
        fields = {"id": ("comment_id", INT), "author_id": ("author_id", INT), "text": ("text", TEXT)}
        fields |= {"comments": ("comments", JSON)}
        for number, item in enumerate(_listed(items, f"/sessions/{session_id}/comments")):
            values, extra = self._map(t.SESSIONS_COMMENTS, item, fields, frozenset({"session_id"}))
            values |= {"session_id": session_id, "comment_no": number}
            self.sink.add(t.SESSIONS_COMMENTS, self._row(t.SESSIONS_COMMENTS, values, extra))


def _listed(body: Any, where: str) -> list[dict]:
    """A per-session response: a list, an ``{"items": [...]}`` wrapper, a single object or null."""
    if body is None:
        return []
    items = body
    if isinstance(body, dict):
        items = body["items"] if isinstance(body.get("items"), list) else [body]
    if not isinstance(items, list):
        raise BadInputError(
            f"{where}: unexpected response, a {type(body).__name__}: must be a list of objects, "
            '{"items": [...]}, one object or null (content not shown: personal data)'
        )
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInputError(
                f"{where}: item {position} is a {type(item).__name__}, not an object "
                "(content not shown: personal data)"
            )
    return items
