//! `GET /api/openapi.json`: the OpenAPI 3.0 description of every endpoint of `vigil serve`,
//! written once here and checked against the running server by schemathesis in the tests.

use serde_json::{json, Value};

use super::api::{DEFAULT_SEARCH_TOP, MAX_QUERY_CHARS};
use super::auth::MAX_NAME_LEN;
use super::store::MAX_HISTORY_LIMIT;
use crate::search::MAX_TOP as SEARCH_MAX_TOP;

/// Pattern of a stream name (see [`super::auth::validate_stream_name`]).
pub fn name_pattern() -> String {
    format!("^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{}}}$", MAX_NAME_LEN - 1)
}

fn error(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn json_body(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

/// The document; with `token`, every `/api` path and `/metrics` require bearer auth.
pub fn document(token: bool) -> Value {
    let name_param = json!({
        "name": "name", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": name_pattern() }
    });
    let open = json!([]);
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Vigil sidecar API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Streaming action recognition as a service: add and remove cameras, read their labels and start/end events live (SSE) or from history, search what they saw by text (CLIP/X-CLIP), scrape metrics."
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness: 200 while the process is up.",
                "security": open,
                "responses": { "200": json_body("up", json!({ "type": "object", "properties": { "status": { "type": "string" } } })) }
            }},
            "/readyz": { "get": {
                "summary": "Readiness: 200 once the model is loaded and the engine runs.",
                "security": open,
                "responses": {
                    "200": json_body("ready", json!({ "type": "object", "properties": { "status": { "type": "string" } } })),
                    "503": error("not ready, or shutting down")
                }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4).",
                "responses": {
                    "200": { "description": "metrics", "content": { "text/plain": { "schema": { "type": "string" } } } },
                    "401": error("missing or wrong token")
                }
            }},
            "/api/openapi.json": { "get": {
                "summary": "This document.",
                "responses": { "200": json_body("OpenAPI 3.0 document", json!({ "type": "object" })), "401": error("missing or wrong token") }
            }},
            "/api/streams": {
                "get": {
                    "summary": "Every stream.",
                    "responses": {
                        "200": json_body("streams", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Stream" } })),
                        "401": error("missing or wrong token")
                    }
                },
                "post": {
                    "summary": "Add a stream (persisted: it resumes after a restart).",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewStream" } } } },
                    "responses": {
                        "201": json_body("added", json!({ "$ref": "#/components/schemas/Stream" })),
                        "400": error("bad body, name or URI"),
                        "401": error("missing or wrong token"),
                        "409": error("a stream of that name exists, or the service runs its maximum of streams"),
                        "413": error("body too large")
                    }
                }
            },
            "/api/streams/{name}": {
                "parameters": [name_param.clone()],
                "get": {
                    "summary": "One stream.",
                    "responses": {
                        "200": json_body("the stream", json!({ "$ref": "#/components/schemas/Stream" })),
                        "400": error("bad name"),
                        "401": error("missing or wrong token"),
                        "404": error("no such stream")
                    }
                },
                "delete": {
                    "summary": "Stop a stream and free its slot; a stream added later under the same name starts from zero state.",
                    "responses": {
                        "204": { "description": "removed" },
                        "400": error("bad name"),
                        "401": error("missing or wrong token"),
                        "404": error("no such stream")
                    }
                }
            },
            "/api/streams/{name}/snapshot.jpg": {
                "parameters": [name_param],
                "get": {
                    "summary": "The latest frame the stream delivered (the model's input), as JPEG.",
                    "responses": {
                        "200": { "description": "JPEG", "content": { "image/jpeg": { "schema": { "type": "string", "format": "binary" } } } },
                        "400": error("bad name"),
                        "401": error("missing or wrong token"),
                        "404": error("no such stream, or no frame yet (then with Retry-After)")
                    }
                }
            },
            "/api/events": { "get": {
                "summary": "Live records as Server-Sent Events: `event:` label, start, end or status; `data:` the JSON `vigil watch` writes; start/end carry their history id as `id:` and are replayed after `Last-Event-ID`.",
                "parameters": [
                    { "name": "stream", "in": "query", "schema": { "type": "string", "pattern": name_pattern() } },
                    { "name": "kind", "in": "query", "description": "comma-separated: label,start,end,status", "schema": { "type": "string", "pattern": "^(label|start|end|status)(,(label|start|end|status))*$" } },
                    { "name": "Last-Event-ID", "in": "header", "schema": { "type": "integer" } }
                ],
                "responses": {
                    "200": { "description": "event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
                    "400": error("bad filter"),
                    "401": error("missing or wrong token")
                }
            }},
            "/api/search": { "get": {
                "summary": "Text search over what the cameras saw (CLIP/X-CLIP services): the query's text embedding against every stored window of the service's model, brute-force cosine, best first.",
                "parameters": [
                    { "name": "q", "in": "query", "required": true, "description": "what to find, e.g. a person climbing a fence", "schema": { "type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS } },
                    { "name": "stream", "in": "query", "schema": { "type": "string" } },
                    { "name": "since", "in": "query", "description": "windows ending at or after: RFC 3339 time, ms since the Unix epoch, a date or an age (15m, 2h, 3d)", "schema": { "type": "string" } },
                    { "name": "until", "in": "query", "description": "windows starting before (same forms as since)", "schema": { "type": "string" } },
                    { "name": "top", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": SEARCH_MAX_TOP, "default": DEFAULT_SEARCH_TOP } }
                ],
                "responses": {
                    "200": json_body("results", json!({ "$ref": "#/components/schemas/SearchResults" })),
                    "400": error("missing query or bad filter"),
                    "401": error("missing or wrong token"),
                    "409": error("the service runs no CLIP or X-CLIP model (start it with --clip/--xclip)")
                }
            }},
            "/api/windows/{id}/snapshot.jpg": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "get": {
                    "summary": "The stored frame of a search result (the newest frame of its window), as JPEG.",
                    "responses": {
                        "200": { "description": "JPEG", "content": { "image/jpeg": { "schema": { "type": "string", "format": "binary" } } } },
                        "400": error("bad id"),
                        "401": error("missing or wrong token"),
                        "404": error("no such window, or it has no snapshot"),
                        "409": error("the service runs no CLIP or X-CLIP model")
                    }
                }
            },
            "/api/events/history": { "get": {
                "summary": "Stored start/end events, newest first.",
                "parameters": [
                    { "name": "stream", "in": "query", "schema": { "type": "string" } },
                    { "name": "label", "in": "query", "schema": { "type": "string" } },
                    { "name": "since", "in": "query", "description": "RFC 3339 time or ms since the Unix epoch (inclusive)", "schema": { "type": "string" } },
                    { "name": "until", "in": "query", "description": "RFC 3339 time or ms since the Unix epoch (exclusive)", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT, "default": 100 } }
                ],
                "responses": {
                    "200": json_body("events", json!({ "type": "array", "items": { "$ref": "#/components/schemas/StoredEvent" } })),
                    "400": error("bad filter"),
                    "401": error("missing or wrong token")
                }
            }}
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "hint"],
                    "properties": { "error": { "type": "string" }, "hint": { "type": "string" } }
                },
                "Top": {
                    "type": "object", "required": ["label", "score"],
                    "properties": { "label": { "type": "string" }, "index": { "type": "integer" }, "score": { "type": "number" } }
                },
                "Stream": {
                    "type": "object",
                    "required": ["name", "uri", "status", "fps", "frames", "dropped", "reconnects", "top"],
                    "properties": {
                        "name": { "type": "string" },
                        "uri": { "type": "string", "description": "credentials redacted" },
                        "status": { "type": "string", "enum": ["connecting", "connected", "reconnecting", "ended", "failed", "removed"] },
                        "fps": { "type": "number", "description": "frames processed per second (over the last second)" },
                        "frames": { "type": "integer", "minimum": 0 },
                        "dropped": { "type": "integer", "minimum": 0 },
                        "reconnects": { "type": "integer", "minimum": 0 },
                        "decoded": { "type": "integer", "minimum": 0 },
                        "native_fps": { "type": "number", "nullable": true },
                        "top": { "type": "array", "items": { "$ref": "#/components/schemas/Top" } },
                        "last_error": { "type": "string", "nullable": true },
                        "live": { "type": "boolean" }
                    }
                },
                "NewStream": {
                    "type": "object", "required": ["name", "uri"], "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string", "pattern": name_pattern() },
                        "uri": { "type": "string", "minLength": 1, "description": "rtsp://…, a file path or file://, v4l2:///dev/videoN, test:[k=v,…], gst:<fragment>" },
                        "fps": { "oneOf": [
                            { "type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1000 },
                            { "type": "string", "enum": ["native"] }
                        ] },
                        "enter": { "type": "number", "minimum": 0, "maximum": 1 },
                        "exit": { "type": "number", "minimum": 0, "maximum": 1 }
                    }
                },
                "SearchResults": {
                    "type": "object", "required": ["query", "model", "searched", "results"],
                    "properties": {
                        "query": { "type": "string" },
                        "model": { "type": "string", "description": "fingerprint of the model the windows were embedded with" },
                        "searched": { "type": "integer", "minimum": 0, "description": "windows compared" },
                        "results": { "type": "array", "items": { "$ref": "#/components/schemas/SearchHit" } }
                    }
                },
                "SearchHit": {
                    "type": "object", "required": ["rank", "score", "stream", "start", "end", "start_pts_ms", "end_pts_ms", "frames"],
                    "properties": {
                        "rank": { "type": "integer", "minimum": 1 },
                        "score": { "type": "number", "description": "cosine similarity of window and query (CLIP's matches are ~0.2-0.35)" },
                        "stream": { "type": "string" },
                        "start": { "type": "string", "format": "date-time", "description": "wall clock of the window's first frame" },
                        "end": { "type": "string", "format": "date-time", "description": "wall clock of the window's last frame" },
                        "start_pts_ms": { "type": "number", "description": "stream time" },
                        "end_pts_ms": { "type": "number" },
                        "frames": { "type": "integer", "minimum": 0 },
                        "snapshot": { "type": "string", "nullable": true, "description": "/api/windows/{id}/snapshot.jpg" }
                    }
                },
                "StoredEvent": {
                    "type": "object", "required": ["id", "event", "stream", "label", "score", "pts_ms", "ts"],
                    "properties": {
                        "id": { "type": "integer" },
                        "event": { "type": "string", "enum": ["start", "end"] },
                        "stream": { "type": "string" },
                        "label": { "type": "string" },
                        "score": { "type": "number" },
                        "pts_ms": { "type": "number" },
                        "ts": { "type": "string", "format": "date-time" },
                        "reason": { "type": "string" }
                    }
                }
            }
        }
    });
    if token {
        doc["components"]["securitySchemes"] =
            json!({ "bearer": { "type": "http", "scheme": "bearer" } });
        doc["security"] = json!([{ "bearer": [] }]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_route() {
        let doc = document(true);
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/openapi.json",
            "/api/streams",
            "/api/streams/{name}",
            "/api/streams/{name}/snapshot.jpg",
            "/api/events",
            "/api/events/history",
            "/api/search",
            "/api/windows/{id}/snapshot.jpg",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        assert_eq!(doc["security"][0]["bearer"], json!([]));
        assert!(document(false).get("security").is_none());
        // every $ref resolves
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
    }
}
