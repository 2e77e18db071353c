"""What a mail admin reads in the log: one INFO line per message, DEBUG lines per stage.

:class:`MessageLog` follows one connection's replies (the ``*-response`` signals, which do not
change what is negotiated with the MTA) and writes, on the ``milterkit.messages`` logger, one
line when a message ends, whether at end-of-message, earlier with a verdict (a reject at MAIL),
or aborted by the MTA::

    [7] message queue_id=4BxK2q1z from=<a@example.org> recipients=2 verdict=reject
        stage=envelope-from reply="550 5.7.1 Go away" elapsed=0.8ms

(one line; ``refused=N`` counts recipients refused at RCPT, ``filters=...`` each composed
filter's verdict). Only what the MTA sent is known: a filter with no ``envelope-from`` or
``envelope-recipient`` handler is not sent MAIL or RCPT (the protocol skips them), so its lines
say ``from=-`` or ``recipients=?``. Each line's fields also travel as ``record.milterkit`` (a
dict), which :class:`JsonFormatter` writes as one JSON object per line (``milterkit run
--log-format json``).
The connection's summary counts every message this way, the early verdicts too.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..stages import ENVELOPE_RECIPIENT, MESSAGE_VERDICTS
from ..status import Status

if TYPE_CHECKING:
    from ..context import ClientContext
    from ..signals import SignalTable

log = logging.getLogger("milterkit.messages")
stage_log = logging.getLogger("milterkit.stages")

#: Stages where a message verdict ends the message (RCPT refusals drop one recipient only).
_ENDING = frozenset({"envelope-from", "data", "header", "end-of-header", "body"})
_ANSWERED = ("connect", "helo", "envelope-from", "envelope-recipient", "data", "unknown",
             "header", "end-of-header", "body")


class MessageLog:
    """Per-message logging of one connection; :attr:`verdicts` counts its messages.

    It connects nothing: :class:`MessageLogs` connects the handlers once per Client and hands
    each reply to the connection's MessageLog.
    """

    __slots__ = ("context", "verdicts", "_refused", "debug")

    def __init__(self, context: ClientContext) -> None:
        self.context = context
        #: Messages of the connection by verdict nick (``continue``, ``reject``, ``aborted``...).
        self.verdicts: Counter[str] = Counter()
        self._refused = 0
        #: Whether the stage lines are logged (``milterkit.stages`` at DEBUG when it began).
        self.debug = stage_log.isEnabledFor(logging.DEBUG)

    @property
    def messages(self) -> int:
        """Messages ended so far (answered, refused early or aborted)."""
        return sum(self.verdicts.values())

    def responded(self, stage: str, status: Status) -> None:
        """``<stage>-response(status)`` was emitted on the connection."""
        if self.debug:
            self._stage_line(stage, status)
        if status not in MESSAGE_VERDICTS:
            return
        if stage == "envelope-recipient":
            if status in (Status.REJECT, Status.TEMPORARY_FAILURE):
                self._refused += 1
                return
        elif stage not in _ENDING:
            return
        self._message(status.nick, stage, self.context.reply)

    def _stage_line(self, stage: str, status: Status) -> None:
        context = self.context
        result = context.message_result
        detail = ""
        if stage == "envelope-from" and result is not None:
            detail = f" {result.envelope_from}"
        elif stage == "envelope-recipient" and result is not None and result.recipients:
            detail = f" {result.recipients[-1]}"
        elif stage == "connect":
            detail = f" {context.hostname} [{getattr(context.address, 'address', '')}]"
        elif stage == "helo":
            detail = f" {context.helo_name}"
        reply = f" reply={_quoted(context.reply)}" if context.reply else ""
        stage_log.debug("[%s] %s%s: %s%s", context.tag, stage, detail, status.nick, reply)

    def processed(self, result: Any) -> None:
        """``message-processed(result)``: the message was answered at end-of-message."""
        if self.debug:
            self._stage_line("end-of-message", result.status)
        verdict = Status.CONTINUE if result.status is Status.DEFAULT else result.status
        self._message(verdict.nick, "end-of-message", result.reply, result)

    def aborted(self) -> None:
        """``abort``: the MTA aborted the message (or the connection ended inside it)."""
        # The stage the message had reached (not its *-replied state).
        self._message("aborted", self.context.last_state.nick, None)

    def _message(self, verdict: str, stage: str, reply: str | None,
                 result: Any = None) -> None:
        context = self.context
        if result is None:
            result = context.message_result
        refused, self._refused = self._refused, 0
        self.verdicts[verdict] += 1
        if not log.isEnabledFor(logging.INFO):
            return
        sender = result.envelope_from if result is not None else None
        recipients: int | None = len(result.recipients) - refused if result is not None else 0
        option = context.option
        if option is not None and option.protocol & ENVELOPE_RECIPIENT.no_event:
            recipients = None  # the MTA sends no RCPT to a milter that handles none
        filters = dict(result.filter_verdicts) if result is not None else {}
        elapsed = (time.monotonic() - result.started) * 1000 if result is not None else 0.0
        fields: dict[str, Any] = {
            "event": "message", "tag": context.tag, "queue_id": context.get_macro("i"),
            "from": sender, "recipients": recipients, "refused": refused, "verdict": verdict,
            "stage": stage, "reply": reply, "filters": filters, "elapsed_ms": round(elapsed, 3),
        }
        text = (f"[{context.tag}] message queue_id={fields['queue_id'] or '-'} "
                f"from={sender if sender is not None else '-'} "
                f"recipients={'?' if recipients is None else recipients}")
        if refused:
            text += f" refused={refused}"
        text += f" verdict={verdict} stage={stage}"
        if reply:
            text += f" reply={_quoted(reply)}"
        if filters:
            text += " filters=" + _quoted(", ".join(f"{k}={v}" for k, v in filters.items()))
        text += f" elapsed={elapsed:.1f}ms"
        log.info("%s", text, extra={"milterkit": fields})


class MessageLogs:
    """The handlers of every connection's :class:`MessageLog`, connected once per Client.

    :meth:`connect` puts them on a signal table every context's table descends from (see
    :class:`~milterkit.server.session.SessionSignals`): connecting a dozen handlers to each new
    context was ~18% of a session's CPU (issue 15). Each handler finds its connection's
    MessageLog by context; a context that :meth:`start` was not called for logs nothing.
    """

    def __init__(self) -> None:
        self._logs: dict[ClientContext, MessageLog] = {}

    def connect(self, table: SignalTable) -> None:
        """Connect the handlers to ``table``."""
        for stage in _ANSWERED:
            table.connect(f"{stage}-response", self._responder(stage))
        table.connect("message-processed", self._on_processed)
        table.connect("abort", self._on_abort)

    def start(self, context: ClientContext) -> MessageLog:
        """Log the messages of ``context`` (until :meth:`stop`)."""
        self._logs[context] = one = MessageLog(context)
        return one

    def stop(self, context: ClientContext) -> None:
        """Forget ``context`` (its connection is closed)."""
        self._logs.pop(context, None)

    def _responder(self, stage: str) -> Any:
        logs = self._logs

        def responded(context: ClientContext, status: Status) -> None:
            one = logs.get(context)
            # Most replies are a CONTINUE that ends nothing: no call for them unless DEBUG.
            if one is not None and (one.debug or status in MESSAGE_VERDICTS):
                one.responded(stage, status)

        responded.__qualname__ = f"MessageLog.{stage.replace('-', '_')}_response"
        return responded

    def _on_processed(self, context: ClientContext, result: Any) -> None:
        one = self._logs.get(context)
        if one is not None:
            one.processed(result)

    def _on_abort(self, context: ClientContext, state: Any) -> None:
        one = self._logs.get(context)
        if one is not None:
            one.aborted()


def _quoted(text: str) -> str:
    return json.dumps(text.replace("\r\n", " / "), ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: ``time``, ``level``, ``logger``, ``pid``, ``message``, and
    for milterkit's message and session lines their fields (``event``, ``queue_id``, ``from``,
    ``recipients``, ``verdict``, ``reply``...) at the top level. An exception's traceback is in
    ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, "milterkit", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
