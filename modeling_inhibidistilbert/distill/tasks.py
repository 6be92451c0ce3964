"""Moved to `modeling_inhibidistilbert.tasks` (the one task registry); this re-export keeps old imports working."""

from ..tasks import METRICS, TASKS, MetricSpec, PublishedScore, TaskSpec, get_task  # noqa: F401
