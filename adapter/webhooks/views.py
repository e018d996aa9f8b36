"""The webhooks blueprint: ``POST /webhooks/kki`` and ``POST /webhooks/sisdmk``; thin by design."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from adapter.observability.tracing import current_traceparent
from adapter.webhooks.receiver import WebhookReceiver

EXTENSION = "hf_webhook_receiver"

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@blueprint.post("/<source>")
def receive(source: str) -> tuple[Response, int]:
    receiver: WebhookReceiver = current_app.extensions[EXTENSION]
    headers = {name.lower(): value for name, value in request.headers.items()}
    receipt = receiver.receive(
        source,
        headers,
        request.stream.read,
        # The request's span (a valid incoming `traceparent` continued, else a new trace), never
        # the header as received: the worker continues this trace.
        traceparent=current_traceparent(),
    )
    return jsonify(status=receipt.result), receipt.status
