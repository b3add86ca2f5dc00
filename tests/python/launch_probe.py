"""The official SDK's side of the Launch interop checks (tests/launch/interop.rs).

  launch_probe.py wait ENTITY PROJECT QUEUE ITEM   QueuedRun.wait_until_finished(); prints the run
  launch_probe.py job REF DIR                       Api().job(REF) and its download; prints what it holds

Prints one JSON line.
"""

import json
import sys

import wandb


def main():
    api = wandb.Api()
    if sys.argv[1] == "wait":
        entity, project, queue, item = sys.argv[2:6]
        queued = api.queued_run(entity, project, queue, item, project_queue="model-registry")
        run = queued.wait_until_finished()
        print(json.dumps({"id": run.id, "state": run.state}))
    elif sys.argv[1] == "job":
        job = api.job(sys.argv[2])
        print(json.dumps({"name": job._name, "entrypoint": job._entrypoint}))
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
