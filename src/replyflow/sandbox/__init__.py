"""A built-in emulator of the Graph API endpoints replyflow uses, so everything runs without a Meta app."""

from replyflow.sandbox.app import create_sandbox_app
from replyflow.sandbox.clock import Clock
from replyflow.sandbox.errors import GraphError
from replyflow.sandbox.failures import InjectedFailure
from replyflow.sandbox.seed import DEMO_SCOPES, seed_demo_world
from replyflow.sandbox.state import PendingWebhook, Principal, SandboxState, WebhookDelivery
from replyflow.sandbox.webhooks import WebhookSender

__all__ = [
    "DEMO_SCOPES",
    "Clock",
    "GraphError",
    "InjectedFailure",
    "PendingWebhook",
    "Principal",
    "SandboxState",
    "WebhookDelivery",
    "WebhookSender",
    "create_sandbox_app",
    "seed_demo_world",
]
