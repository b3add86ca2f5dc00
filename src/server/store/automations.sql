-- Schema version 2: W&B Automations (webhook integrations, the team secrets they reference,
-- filter triggers) and the deliveries they produce. Deliveries are an outbox: rows are written
-- in the transaction that changes the run, and the webhook sender works them off, so a delivery
-- survives a restart and never goes out for a change that was rolled back.

CREATE TABLE secrets (
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (entity_id, name)
) WITHOUT ROWID;

CREATE TABLE integrations (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    -- Names of secrets of the same entity: the Bearer token and the HMAC signing key.
    access_token_ref TEXT,
    secret_ref TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (entity_id, name)
);

CREATE TABLE triggers (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL,
    description TEXT,
    enabled INTEGER NOT NULL,
    -- PROJECT (scope_id = projects.id) or ENTITY (scope_id = entities.id).
    scope_type TEXT NOT NULL,
    scope_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event_filter TEXT NOT NULL,
    action_type TEXT NOT NULL,
    -- The TriggeredActionConfig input as JSON.
    action_config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (entity_id, name)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id),
    trigger_id INTEGER REFERENCES triggers(id) ON DELETE SET NULL,
    trigger_name TEXT NOT NULL,
    integration_id INTEGER REFERENCES integrations(id) ON DELETE SET NULL,
    run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    event_type TEXT NOT NULL,
    -- The run state the event reports (FINISHED, FAILED, ...).
    event_state TEXT,
    -- The payload with the event's variables filled; secrets are filled only when sending, so
    -- they never rest here.
    body TEXT NOT NULL,
    -- pending, delivered or failed.
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_http_status INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_run ON deliveries (trigger_id, run_id);
CREATE INDEX deliveries_by_entity ON deliveries (entity_id, id);
