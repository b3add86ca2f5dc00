"""The official SDK logs a run; prints what it logged as JSON for the Rust side to compare.

Usage: interop_sdk_writes.py WORKDIR. Server, key, entity and project come from WANDB_* env.
"""

import hashlib
import base64
import json
import os
import sys

import wandb

STEPS, METRICS = 500, 5


def row(step: int) -> dict:
    return {f"metric_{k}": step * 0.5 + k + 1 / (step + 1) for k in range(METRICS)}


def main() -> None:
    workdir = sys.argv[1]
    config = {"lr": 0.001, "branch": "feat-interop", "layers": 4, "nested": {"a": 1, "b": [1, 2]}}
    run = wandb.init(config=config, tags=["interop", "sdk"], group="g1", job_type="train",
                     notes="written by the official SDK", name="sdk-writer")
    for step in range(STEPS):
        run.log(row(step))
    run.summary["best_metric"] = 0.125
    run.summary.update({"final_note": "done"})

    weights = os.path.join(workdir, "weights.bin")
    with open(weights, "wb") as f:
        f.write(bytes(range(256)) * 64)
    artifact = wandb.Artifact("interop-model", type="model", metadata={"step": STEPS})
    artifact.add_file(weights)
    run.log_artifact(artifact, aliases=["best"])
    run.alert(title="interop", text="the SDK run is done", level=wandb.AlertLevel.INFO)
    run_id, entity, project = run.id, run.entity, run.project
    run.finish()

    with open(weights, "rb") as f:
        md5 = base64.b64encode(hashlib.md5(f.read()).digest()).decode()
    print(json.dumps({
        "run_id": run_id, "entity": entity, "project": project, "config": config,
        "rows": [row(step) for step in range(STEPS)],
        "summary": {"best_metric": 0.125, "final_note": "done"},
        "artifact": f"{entity}/{project}/interop-model:best", "file": "weights.bin", "md5": md5,
    }))


if __name__ == "__main__":
    main()
