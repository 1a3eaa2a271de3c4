"""Long-running operations of the double's Azure Resource Manager, in each form real ARM uses.

Every create and delete the double's ARM accepts goes through :class:`Operations`, which
answers in the style configured for it (``double.arm.lro_styles[operation]``):

- ``"azure-async"``: 201 (create) or 202 (delete) with ``Azure-AsyncOperation`` (deletes add
  ``Location``) and ``Retry-After``; the status resource answers 200 ``{"status":
  "InProgress"}`` until it answers 200 ``Succeeded`` or ``Failed`` (with ``error``).
  Cognitive Services deployments, account deletes and purges.
- ``"azure-async-202"``: the same headers, but status reads answer **202** ``{"status":
  "Accepted"}`` until the final 200: Azure Databricks workspace create.
- ``"location"``: ``Location`` and ``Retry-After`` only, on a 202 (delete) or a 201 with the
  resource (create: the SDKs accept only 200 and 201 for a PUT, as ARM's contract says); the
  Location answers 202 until done, then 200 with the resource (create) or 204 (delete):
  Azure Databricks workspace delete.
- ``"none"``: the final answer at once, no LRO headers: 201 with ``provisioningState``
  ``Succeeded`` (Cognitive Services account create), or 200 for a delete. A failure then
  shows as ``provisioningState: Failed`` in the 201 body, its error in ``properties.error``.

Operation URLs carry a base64 token of ``<resource id>;<operation guid>``, subscription id
included, as ARM's do (``operationStatus/YWUzNDFk...==`` in the official WorkspaceDelete
example). An operation finishes after ``polls`` status reads rather than after some time,
so a recording made against the double replays identically.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .routing import Request, Response, json_response

STYLES = ("azure-async", "azure-async-202", "location", "none")
DEFAULT_STYLES = {
    "account.create": "none",
    "account.delete": "azure-async",
    "account.purge": "azure-async",
    "deployment.create": "azure-async",
    "deployment.delete": "azure-async",
    "workspace.create": "azure-async-202",
    "workspace.delete": "location",
}
"""How each operation answers by default: as the real services were seen to answer."""

Finish = Callable[[], "dict[str, Any] | None"]
"""Completes an operation; returns an ARM error (``{"code", "message"}``) when it failed."""


def now() -> str:
    """An ARM timestamp."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def operation_token(resource_id: str) -> str:
    """A new operation id: base64 of ``<resource id>;<guid>``, as ARM mints them."""
    return base64.b64encode(f"{resource_id};{uuid.uuid4()}".encode()).decode("ascii")


@dataclass
class Operation:
    """A long-running operation: ``finish`` runs on the status read that completes it."""

    style: str
    polls_left: int
    finish: Finish
    result: Callable[[], dict[str, Any] | None]
    """The resource once done (a create's final GET body), or None (a delete)."""
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    started: str = field(default_factory=now)


class Operations:
    """The operations of one ARM double, and the responses that start and report them."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.reset()

    def reset(self) -> None:
        """Forget every operation; restore the default styles and knobs."""
        with self.lock:
            self.polls = 1
            self.retry_after = "1"
            """Whole seconds, as ARM sends it (the Databricks SDK reads it as an int; azure-core
            waits 30 s, its default, on ``"0"``)."""
            self.styles = dict(DEFAULT_STYLES)
            self._operations: dict[str, Operation] = {}

    def style(self, operation: str) -> str:
        """The configured style of ``operation`` (``"workspace.create"``...)."""
        with self.lock:
            style = self.styles.get(operation, "azure-async")
        if style not in STYLES:
            raise ValueError(f"lro_styles[{operation!r}] = {style!r}: use one of {STYLES}")
        return style

    # -- starting ----------------------------------------------------------------------------

    def start(
        self,
        request: Request,
        operation: str,
        *,
        base: str,
        status_prefix: str,
        resource_id: str,
        body: Callable[[], dict[str, Any] | None],
        finish: Finish,
        status_word: str = "operationStatuses",
        style: str | None = None,
    ) -> Response:
        """Answer a create (``operation`` ``"<kind>.create"``) or delete in its style
        (``style`` overrides the configured one).

        ``body()`` is the resource as it stands (None for deletes); ``finish()`` completes
        the operation. Databricks says ``operationStatus``, Cognitive Services
        ``operationStatuses``.
        """
        creating = operation.endswith(".create")
        style = style or self.style(operation)
        if style == "none":
            error = finish()
            current = body()
            if not creating:
                return Response(200, b"", {})
            assert current is not None
            if error:
                current["properties"]["provisioningState"] = "Failed"
                current["properties"]["error"] = error
            return json_response(201, current)
        op_id = operation_token(resource_id)
        with self.lock:
            self._operations[op_id] = Operation(style, self.polls, finish, body)
            retry_after = self.retry_after
        api_version = request.query.get("api-version", "")
        status_url = f"{base}{status_prefix}/{status_word}/{op_id}?api-version={api_version}"
        location_url = f"{base}{status_prefix}/operationResults/{op_id}?api-version={api_version}"
        headers = {"Retry-After": retry_after}
        if style == "location":
            headers["Location"] = location_url
        else:
            headers["Azure-AsyncOperation"] = status_url
            if not creating:
                headers["Location"] = location_url
        current = body() if creating else None
        if current is None:
            return Response(201 if creating else 202, b"", headers)
        return json_response(201, current, headers)

    # -- polling -----------------------------------------------------------------------------

    def _advance(self, op_id: str) -> Operation | None:
        with self.lock:
            operation = self._operations.get(op_id)
            if operation is None or operation.status != "InProgress":
                return operation
            if operation.polls_left > 0:
                operation.polls_left -= 1
                return operation
            error = operation.finish()
            operation.status = "Failed" if error else "Succeeded"
            operation.error = error
            return operation

    def status(self, request: Request) -> Response:
        """``GET .../operationStatus(es)/{id}``: the Azure-AsyncOperation resource."""
        op_id = request.params["op"]
        operation = self._advance(op_id)
        if operation is None:
            return _not_found(op_id)
        body: dict[str, Any] = {"id": request.path, "name": op_id, "startTime": operation.started}
        if operation.status == "InProgress":
            if operation.style == "azure-async-202":
                return json_response(202, {**body, "status": "Accepted"}, {"Retry-After": self.retry_after})
            return json_response(200, {**body, "status": "InProgress"}, {"Retry-After": self.retry_after})
        body.update(status=operation.status, endTime=now())
        if operation.error:
            body["error"] = operation.error
        return json_response(200, body)

    def result(self, request: Request, base: str) -> Response:
        """``GET .../operationResults/{id}``: the Location resource (202 until done)."""
        op_id = request.params["op"]
        operation = self._advance(op_id)
        if operation is None:
            return _not_found(op_id)
        if operation.status == "InProgress":
            headers = {"Location": base + request.path + _query(request), "Retry-After": self.retry_after}
            return Response(202, b"", headers)
        if operation.error:
            return json_response(400, {"error": operation.error})
        final = operation.result()
        return json_response(200, final) if final is not None else Response(204, b"", {})


def _query(request: Request) -> str:
    version = request.query.get("api-version")
    return f"?api-version={version}" if version else ""


def _not_found(op_id: str) -> Response:
    return json_response(
        404, {"error": {"code": "OperationNotFound", "message": f"Operation {op_id} was not found."}}
    )
