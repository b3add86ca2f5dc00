-- Schema of the local W&B-compatible store. Applied once per database (PRAGMA user_version).
-- Times are stored as fixed-width UTC RFC 3339 strings with microseconds, so that text order is
-- time order.

CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (entity_id, name)
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    display_name TEXT,
    description TEXT,
    notes TEXT,
    state TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    system_metrics TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    group_name TEXT,
    job_type TEXT,
    commit_hash TEXT,
    repo TEXT,
    host TEXT,
    program TEXT,
    sweep_name TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    -- Highest `_step` seen in history; NULL while the run has no history.
    history_last_step INTEGER,
    UNIQUE (project_id, name)
);

-- Lines of the append-only streams (history, events) and of output.log, keyed by the line
-- number the client sent (file_stream offset + index), which makes re-sent chunks idempotent.
CREATE TABLE run_lines (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    stream INTEGER NOT NULL,
    line INTEGER NOT NULL,
    step INTEGER,
    content TEXT NOT NULL,
    PRIMARY KEY (run_id, stream, line)
) WITHOUT ROWID;
CREATE INDEX run_lines_by_step ON run_lines (run_id, stream, step);

-- Per-key type counts of the history, maintained on insert (Run.historyKeys).
CREATE TABLE history_keys (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (run_id, key, type)
) WITHOUT ROWID;

CREATE TABLE run_files (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER,
    md5 TEXT,
    mimetype TEXT,
    -- 1 once the bytes were PUT to the signed URL.
    stored INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (run_id, name)
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    severity TEXT NOT NULL,
    wait_duration_ms INTEGER,
    -- 1 when an alert with the same title was raised inside the previous one's wait window.
    suppressed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

-- Content-addressed file bodies (artifact files and manifests), keyed by hex MD5.
CREATE TABLE blobs (
    md5 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE artifact_types (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE artifact_collections (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    type_id INTEGER NOT NULL REFERENCES artifact_types(id),
    name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES artifact_collections(id),
    -- Assigned at commit: 0, 1, 2... within the collection.
    version_index INTEGER,
    state TEXT NOT NULL,
    digest TEXT NOT NULL,
    description TEXT,
    metadata TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    file_count INTEGER NOT NULL DEFAULT 0,
    history_step INTEGER,
    ttl_duration_seconds INTEGER,
    created_by_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    client_id TEXT,
    sequence_client_id TEXT,
    -- Aliases requested at creation, applied at commit (JSON list of strings).
    pending_aliases TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    -- Hex MD5 of the uploaded manifest (a blob); NULL until the manifest is PUT.
    manifest_md5 TEXT,
    -- Base64 MD5 the client announced for the manifest (createArtifactManifest.digest).
    manifest_digest TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (collection_id, version_index)
);

CREATE TABLE artifact_aliases (
    collection_id INTEGER NOT NULL REFERENCES artifact_collections(id),
    alias TEXT NOT NULL,
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    PRIMARY KEY (collection_id, alias)
) WITHOUT ROWID;

-- Entries of committed manifests.
CREATE TABLE artifact_files (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    birth_artifact_id TEXT,
    ref TEXT,
    PRIMARY KEY (artifact_id, name)
) WITHOUT ROWID;

CREATE TABLE run_artifacts (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    -- 'input' (useArtifact) or 'output' (createArtifact with runName).
    direction TEXT NOT NULL,
    PRIMARY KEY (run_id, artifact_id, direction)
) WITHOUT ROWID;

CREATE TABLE default_resource_configs (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    resource TEXT NOT NULL,
    config TEXT NOT NULL,
    template_variables TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE run_queues (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    access TEXT NOT NULL,
    prioritization_mode TEXT,
    default_resource_config_id INTEGER REFERENCES default_resource_configs(id),
    external_links TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE run_queue_items (
    id INTEGER PRIMARY KEY,
    queue_id INTEGER NOT NULL REFERENCES run_queues(id) ON DELETE CASCADE,
    run_spec TEXT NOT NULL,
    priority INTEGER,
    template_variable_values TEXT,
    -- PENDING, LEASED (popped, not acked), CLAIMED (acked) or FAILED.
    state TEXT NOT NULL,
    leased_until TEXT,
    launch_agent_id INTEGER,
    associated_run_id TEXT,
    error_message TEXT,
    error_stage TEXT,
    error_file_paths TEXT,
    -- JSON list of {message, stage, filePaths, at}.
    warnings TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX run_queue_items_by_queue ON run_queue_items (queue_id, state);

CREATE TABLE launch_agents (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    agent_config TEXT,
    version TEXT,
    run_queues TEXT NOT NULL,
    status TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
