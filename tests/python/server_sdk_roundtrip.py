"""Round trip through the official wandb SDK against mlwf's W&B-compatible server.

Run by tests/server/sdk.rs with WANDB_BASE_URL, WANDB_API_KEY and the WANDB_*_DIR variables
pointing at a scratch directory. Writes a run (config, tags, group, notes, 500 logged steps of 5
metrics, summary updates, an artifact, an alert), reads everything back through wandb.Api() and
checks it; then resumes a run and uses the artifact, and pushes a job to a launch queue. Exits
non-zero with a message on the first mismatch; prints "OK <run id>" on success.
"""

import hashlib
import math
import os
import sys
import tempfile

import wandb

ENTITY = "sdk-ent"
PROJECT = "sdk-proj"
STEPS = 500
CONFIG = {"lr": 0.001, "branch": "feat-x", "nested": {"a": 1, "b": [1, 2]}, "epochs": 3}


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def metrics(step):
    return {
        "loss": 1.0 / (step + 1),
        "acc": step / STEPS,
        "lr": 0.001 * (0.99**step),
        "grad_norm": math.sin(step),
        "tokens": step * 1024,
    }


def write_run(scratch):
    run = wandb.init(
        entity=ENTITY,
        project=PROJECT,
        config=CONFIG,
        tags=["probe", "t2"],
        group="grpA",
        job_type="train",
        notes="hello notes",
        name="sdk-roundtrip",
    )
    for step in range(STEPS):
        run.log(metrics(step))
    print("stdout line from the run")
    run.summary["best_acc"] = 0.99
    run.summary.update({"final_note": "done"})

    model = os.path.join(scratch, "model.bin")
    with open(model, "wb") as f:
        f.write(os.urandom(4096))
    artifact = wandb.Artifact("sdk-model", type="model", metadata={"k": "v"})
    artifact.add_file(model)
    run.log_artifact(artifact, aliases=["best"])
    run.alert(title="sdk alert", text="something happened", level=wandb.AlertLevel.WARN)
    run_id = run.id
    run.finish()
    with open(model, "rb") as f:
        digest = hashlib.md5(f.read()).hexdigest()
    return run_id, digest


def read_back(run_id, model_md5, scratch):
    api = wandb.Api()
    path = f"{ENTITY}/{PROJECT}"

    runs = api.runs(
        path,
        filters={
            "$and": [
                {"config.branch.value": "feat-x"},
                {"state": "finished"},
                {"tags": {"$in": ["probe"]}},
            ]
        },
        order="-created_at",
    )
    check(len(runs) == 1, f"expected 1 run matching the filter, got {len(runs)}")
    check(len(api.runs(path, filters={"config.lr": {"$gt": 0.01}})) == 0, "$gt filter")
    run = runs[0]
    check(run.id == run_id, f"run id {run.id} != {run_id}")
    check(run.state == "finished", f"state {run.state}")
    check(run.name == "sdk-roundtrip", f"display name {run.name}")
    check(run.group == "grpA" and run.job_type == "train", "group/job type")
    check(run.notes == "hello notes", f"notes {run.notes!r}")
    check(sorted(run.tags) == ["probe", "t2"], f"tags {run.tags}")
    for key, value in CONFIG.items():
        check(run.config.get(key) == value, f"config {key}: {run.config.get(key)!r}")

    summary = run.summary
    last = metrics(STEPS - 1)
    check(summary["best_acc"] == 0.99, "summary best_acc")
    check(summary["final_note"] == "done", "summary final_note")
    check(summary["_step"] == STEPS - 1, f"summary _step {summary['_step']}")
    for key, value in last.items():
        check(math.isclose(summary[key], value), f"summary {key}")

    history = run.history(samples=STEPS, pandas=False)
    check(len(history) == STEPS, f"history() returned {len(history)} rows")
    for row in history:
        expected = metrics(row["_step"])
        for key, value in expected.items():
            check(math.isclose(row[key], value, abs_tol=1e-12), f"history {key} at {row['_step']}")
    check([r["_step"] for r in history] == list(range(STEPS)), "history steps in order")

    sampled = run.history(samples=50, keys=["loss"], pandas=False)
    check(len(sampled) == 50, f"sampled history has {len(sampled)} rows")
    check(sampled[0]["_step"] == 0 and sampled[-1]["_step"] == STEPS - 1, "sampled ends")

    scanned = list(run.scan_history(page_size=128))
    check(len(scanned) == STEPS, f"scan_history returned {len(scanned)} rows")
    for row in scanned:
        expected = metrics(row["_step"])
        for key, value in expected.items():
            check(math.isclose(row[key], value, abs_tol=1e-12), f"scan {key} at {row['_step']}")
    scanned_loss = list(run.scan_history(keys=["loss"], page_size=100))
    check(len(scanned_loss) == STEPS, f"scan_history(keys) returned {len(scanned_loss)} rows")

    same = api.run(f"{path}/{run_id}")
    check(same.id == run_id and same.summary["best_acc"] == 0.99, "api.run")

    names = {f.name for f in run.files()}
    for expected in ("wandb-metadata.json", "config.yaml", "output.log", "wandb-summary.json"):
        check(expected in names, f"run file {expected} missing from {sorted(names)}")
    console = [line.content for line in run.console_logs()]
    check("stdout line from the run" in console, f"console log {console}")
    check(any(line.level == "" for line in run.console_logs(last=5)), "console log levels")
    log_dir = os.path.join(scratch, "files")
    run.file("output.log").download(root=log_dir, replace=True)
    with open(os.path.join(log_dir, "output.log")) as f:
        check("stdout line from the run" in f.read(), "output.log content")

    artifact = api.artifact(f"{path}/sdk-model:latest")
    check(artifact.type == "model", f"artifact type {artifact.type}")
    check(artifact.version == "v0", f"artifact version {artifact.version}")
    check(set(artifact.aliases) >= {"latest", "best", "v0"} or set(artifact.aliases) >= {"latest", "best"},
          f"aliases {artifact.aliases}")
    check(artifact.metadata == {"k": "v"}, f"metadata {artifact.metadata}")
    target = artifact.download(root=os.path.join(scratch, "download"))
    with open(os.path.join(target, "model.bin"), "rb") as f:
        check(hashlib.md5(f.read()).hexdigest() == model_md5, "artifact file content")
    best = api.artifact(f"{path}/sdk-model:best")
    check(best.id == artifact.id, "alias best resolves to the same version")


def resume_and_use_artifact(model_md5, scratch):
    """A run that ends, then resumes, continues its history and uses the logged artifact."""
    run = wandb.init(entity=ENTITY, project=PROJECT, id="resumable", config={"phase": 1})
    for step in range(10):
        run.log({"x": step})
    run.finish()

    run = wandb.init(entity=ENTITY, project=PROJECT, id="resumable", resume="must")
    check(run.starting_step == 10, f"resumed at step {run.starting_step}")
    for step in range(10, 15):
        run.log({"x": step})
    used = run.use_artifact("sdk-model:latest")
    target = used.download(root=os.path.join(scratch, "used"))
    with open(os.path.join(target, "model.bin"), "rb") as f:
        check(hashlib.md5(f.read()).hexdigest() == model_md5, "used artifact content")
    run.finish()

    resumed = wandb.Api().run(f"{ENTITY}/{PROJECT}/resumable")
    check(resumed.state == "finished", f"resumed state {resumed.state}")
    check(resumed.config.get("phase") == 1, "config kept across resume")
    steps = [row["x"] for row in resumed.scan_history()]
    check(steps == list(range(15)), f"resumed history {steps}")


def push_to_launch_queue():
    """Creates a launch queue with a templated default config and pushes a job to it."""
    from wandb.sdk.launch import launch_add

    api = wandb.Api()
    api.create_run_queue(
        "sdk-queue",
        "local-process",
        entity=ENTITY,
        config={"env": ["A={{a}}"]},
        template_variables={"a": {"type": "string"}},
    )
    queued = launch_add(
        docker_image="python:3.12",
        queue_name="sdk-queue",
        entity=ENTITY,
        project=PROJECT,
        template_variables={"a": "x"},
    )
    queue = api.run_queue(ENTITY, "sdk-queue")
    items = [(item.id, item.state) for item in queue.items]
    check(items == [(queued.id, "pending")], f"queue items {items}")
    check(queue.template_variables == [{"name": "a", "schema": '{"type":"string"}'}],
          f"template variables {queue.template_variables}")


def main():
    scratch = tempfile.mkdtemp(dir=os.environ.get("WANDB_DIR"))
    run_id, model_md5 = write_run(scratch)
    read_back(run_id, model_md5, scratch)
    resume_and_use_artifact(model_md5, scratch)
    push_to_launch_queue()
    print(f"OK {run_id}")


if __name__ == "__main__":
    main()
