"""The official public API reads a run that mlwf logged; prints what it saw as JSON.

Usage: interop_sdk_reads.py ENTITY/PROJECT/RUN_ID ARTIFACT_REF DOWNLOAD_DIR
"""

import json
import sys

import wandb


def main() -> None:
    path, artifact_ref, download_dir = sys.argv[1:4]
    api = wandb.Api()
    run = api.run(path)
    entity, project, _ = path.split("/")
    listed = [r.id for r in api.runs(f"{entity}/{project}",
                                     filters={"config.branch": run.config.get("branch")})]
    rows = [{k: v for k, v in r.items() if not k.startswith("_") or k == "_step"}
            for r in run.scan_history()]
    log = run.file("output.log").download(root=download_dir, replace=True).read()
    artifact = api.artifact(artifact_ref)
    files = artifact.download(root=download_dir + "/artifact")
    print(json.dumps({
        "state": run.state, "config": dict(run.config), "tags": run.tags,
        "summary": {k: v for k, v in run.summary.items() if not k.startswith("_")},
        "listed_by_branch": listed, "rows": rows, "output_log": log,
        "artifact_dir": files, "artifact_aliases": artifact.aliases,
        "artifact_metadata": artifact.metadata,
    }))


if __name__ == "__main__":
    main()
