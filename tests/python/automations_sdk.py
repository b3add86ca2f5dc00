"""The official SDK's Automations API against mlwf's server.

Run by tests/server/automations.rs with WANDB_BASE_URL and WANDB_API_KEY set. Arguments: entity,
project, the name of a webhook integration and of an automation that mlwf's client made. The SDK
must list both, create an automation of its own on run state FINISHED/FAILED through the
integration, read it back and delete it. Prints one JSON line on success.
"""

import json
import sys

import wandb
from wandb.automations import OnRunState, RunEvent, SendWebhook


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


entity, project, hook_name, automation_name = sys.argv[1:5]
api = wandb.Api()

hooks = [h for h in api.webhook_integrations(entity=entity) if h.name == hook_name]
check(len(hooks) == 1, f"webhook integration {hook_name} listed {len(hooks)} times")
listed = [a.name for a in api.automations(entity=entity)]
check(automation_name in listed, f"{automation_name} not in {listed}")

event = OnRunState(
    scope=api.project(project, entity=entity),
    filter=RunEvent.state.in_(["finished", "failed"]),
)
action = SendWebhook.from_integration(
    hooks[0], payload={"event_type": "sdk_made", "client_payload": {"who": "${event_author}"}}
)
created = api.create_automation(event >> action, name="sdk-made", description="by the SDK")
check(created.name == "sdk-made", f"created {created.name}")
again = [a for a in api.automations(entity=entity) if a.name == "sdk-made"]
check(len(again) == 1, "the SDK's automation is not listed")
check(again[0].action.integration.id == hooks[0].id, "its integration changed")
api.delete_automation(created)
gone = [a.name for a in api.automations(entity=entity)]
check("sdk-made" not in gone, "the SDK's automation is still listed after delete")
print(json.dumps({"hooks": len(hooks), "listed": listed, "event": str(again[0].event)}))
