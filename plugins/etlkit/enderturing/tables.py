"""The 20 warehouse tables as the loader sees them: natural key, COPY column order, child replacement.

Column types live in ``include/sql/enderturing/*.sql``; a test checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    values: tuple[str, ...] = ()
    has_extra: bool = True
    replace_by: str | None = None  # parent key column: children of re-loaded parents are replaced
    refs: tuple[tuple[str, str], ...] = ()  # soft relationships (column, table whose id it names)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.values + (("extra",) if self.has_extra else ())

    @cached_property
    def value_columns(self) -> tuple[str, ...]:
        """Every column but ``extra``."""
        return self.key + self.values

    @property
    def non_key_columns(self) -> tuple[str, ...]:
        return self.values + (("extra",) if self.has_extra else ())


AGENTS = Table("agents", ("id",), ("name", "phone_number", "is_active", "deactivated_at"))
SCORECARDS = Table(
    "scorecards",
    ("id",),
    (
        "name",
        "type",
        "na_behavior",
        "count_critical_scores",
        "is_automated",
        "is_protected",
        "is_default",
        "is_archived",
    ),
)
GROUPS = Table(
    "groups", ("id",), ("name", "scorecard_id", "is_default"), refs=(("scorecard_id", "scorecards"),)
)
AGENT_GROUP_ASSOCIATIONS = Table(
    "agent_group_associations",
    ("group_id", "agent_id", "start_dt"),
    replace_by="agent_id",
    refs=(("group_id", "groups"), ("agent_id", "agents")),
)
USERS = Table(
    "users",
    ("id",),
    (
        "email",
        "is_active",
        "is_superuser",
        "full_name",
        "agent_id",
        "agent_group_id",
        "language",
        "uuid",
        "invite_expires",
    ),
    refs=(("agent_id", "agents"), ("agent_group_id", "groups")),
)
CATEGORIES = Table("categories", ("id",), ("name", "filter_data", "position", "created_at", "updated_at"))
LABELS = Table("labels", ("id",), ("text",))
CATEGORY_LABELS = Table(
    "category_labels",
    ("category_id", "label_id"),
    has_extra=False,
    replace_by="category_id",
    refs=(("category_id", "categories"), ("label_id", "labels")),
)
SCORECARD_CATEGORIES = Table(
    "scorecard_categories",
    ("id", "scorecard_id"),
    ("name", "sort_order"),
    refs=(("scorecard_id", "scorecards"),),
)
SCORECARD_POINTS = Table(
    "scorecard_points",
    ("id", "scorecard_id"),
    ("category_id", "name", "description", "sort_order", "critical", "max_score", "allow_partial_score"),
    refs=(("scorecard_id", "scorecards"), ("category_id", "scorecard_categories")),
)
TAGS = Table(
    "tags",
    ("id",),
    ("name", "type", "team_id", "is_archived", "archived_by_id", "archived_at"),
    refs=(("team_id", "groups"), ("archived_by_id", "users")),
)
TAG_LABELS = Table(
    "tag_labels",
    ("tag_id", "label_id"),
    has_extra=False,
    replace_by="tag_id",
    refs=(("tag_id", "tags"), ("label_id", "labels")),
)

SESSION_TEXT = (
    "type",
    "caller_id",
    "source",
    "language_code",
    "asr_size",
    "filename",
    "destination_id",
    "direction",
    "queue_name",
    "campaign_name",
    "term_reason",
)
SESSION_INT = (
    "agent_id",
    "group_id",
    "agent_channel",
    "comments_count",
    "default_scorecard_id",
    "waiting_time",
    "fcr",
    "csi",
    "nps",
    "list_id",
    "words_count_agent",
    "words_count_client",
    "words_count_both",
)
SESSION_FLOAT = ("duration", "silence", "silence_percent", "average_score")
SESSION_JSON = ("overlaps_data", "duration_details", "score_details", "additional_info")
SESSIONS = Table(
    "sessions",
    ("id",),
    SESSION_TEXT
    + ("start_dt",)
    + SESSION_INT
    + SESSION_FLOAT
    + ("is_processed",)
    + SESSION_JSON
    + ("caller_prev_session_id",),
    refs=(("agent_id", "agents"), ("group_id", "groups"), ("default_scorecard_id", "scorecards")),
)
SESSIONS_CATEGORIES = Table(
    "sessions_categories",
    ("session_id", "category_id"),
    ("is_verified",),
    replace_by="session_id",
    refs=(("category_id", "categories"),),
)
SESSIONS_CRM_STATUSES = Table("sessions_crm_statuses", ("session_id", "crm_status"), replace_by="session_id")
SESSIONS_REVIEWERS = Table(
    "sessions_reviewers",
    ("session_id", "reviewer_id"),
    ("last_reviewed_at",),
    replace_by="session_id",
    refs=(("reviewer_id", "users"),),
)
SESSIONS_SCORES = Table(
    "sessions_scores",
    ("session_id", "scorecard_id", "reviewer_id", "scorecard_point_id"),
    ("score", "comment"),
    replace_by="session_id",
    refs=(
        ("scorecard_id", "scorecards"),
        ("reviewer_id", "users"),
        ("scorecard_point_id", "scorecard_points"),
    ),
)
SESSIONS_TAGS = Table(
    "sessions_tags",
    ("session_id", "tag_id", "match_no"),
    ("score", "matched_corpus_text", "is_agent", "transcript_id", "matched_query_text", "meta"),
    replace_by="session_id",
    refs=(("tag_id", "tags"),),
)
SESSIONS_COMMENTS = Table(
    "sessions_comments",
    ("session_id", "comment_no"),
    ("comment_id", "author_id", "text", "comments"),
    replace_by="session_id",
    refs=(("author_id", "users"),),
)
SESSIONS_SUMMARIES = Table(
    "sessions_summaries",
    ("session_id", "summary_no"),
    ("summary_id", "text", "created_at", "updated_at"),
    replace_by="session_id",
)

DICTIONARY_TABLES = (
    AGENTS,
    SCORECARDS,
    GROUPS,
    AGENT_GROUP_ASSOCIATIONS,
    USERS,
    CATEGORIES,
    LABELS,
    CATEGORY_LABELS,
    SCORECARD_CATEGORIES,
    SCORECARD_POINTS,
    TAGS,
    TAG_LABELS,
)
SESSION_TABLES = (
    SESSIONS,
    SESSIONS_CATEGORIES,
    SESSIONS_CRM_STATUSES,
    SESSIONS_REVIEWERS,
    SESSIONS_SCORES,
    SESSIONS_TAGS,
    SESSIONS_COMMENTS,
    SESSIONS_SUMMARIES,
)
ALL_TABLES = DICTIONARY_TABLES + SESSION_TABLES
