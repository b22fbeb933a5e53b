"""Webhook delivery: signed POSTs of queued events, retried with backoff, by a runner thread."""

from corral.platform.webhooks.delivery import (
    DeliveryRunner,
    send_attempt,
    sign,
    start_webhook_runner,
)

__all__ = ["DeliveryRunner", "send_attempt", "sign", "start_webhook_runner"]
