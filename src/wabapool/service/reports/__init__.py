"""What the company's people read, one module per report.

- `logs`: the deduction logs, keyset pages of deductions and refunds (`mcc_logs`);
- `export`: the CSV download's pipeline (pages read, opened and formatted off the event loop, handed to the
  response through a bounded queue) and the per-company limit on exports at once;
- `csv`: the CSV's format (its columns and the cells made inert), which the export writes;
- `usage`: spend per day and per WABA; `events`: billing events with their delivery state;
- `reader`: `Reports`, the one object the API holds, which reads the database through these.
"""

from wabapool.service.reports.events import Delivery, EventPage, EventRow, delivery_of
from wabapool.service.reports.export import Export, ExportPage, ExportSlots
from wabapool.service.reports.logs import REFUND_RANK, LogFilter, LogPage, LogRow
from wabapool.service.reports.reader import Reports
from wabapool.service.reports.usage import UsageDay, UsageSeries, WabaUsage

__all__ = [
    "REFUND_RANK",
    "Delivery",
    "EventPage",
    "EventRow",
    "Export",
    "ExportPage",
    "ExportSlots",
    "LogFilter",
    "LogPage",
    "LogRow",
    "Reports",
    "UsageDay",
    "UsageSeries",
    "WabaUsage",
    "delivery_of",
]
