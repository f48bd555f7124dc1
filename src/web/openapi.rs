//! The OpenAPI document as published: what utoipa generates from the handlers, completed with
//! what it cannot say — the webhooks (OpenAPI 3.1), the answers the middleware and extractors
//! give to every operation of a kind, the text rules, lengths and ranges the server checks, and
//! an example body for every operation.

/// The OpenAPI document with its `webhooks` (OpenAPI 3.1), which utoipa does not model: one
/// entry per event type of the catalogue, the body's `data` referring to the payload's schema.
pub fn openapi_value() -> serde_json::Value {
    let mut doc = serde_json::to_value(super::openapi()).unwrap_or_default();
    let header = |name: &str, description: &str| {
        serde_json::json!({"name": name, "in": "header", "required": true, "description": description,
                           "schema": {"type": "string"}})
    };
    let mut hooks = serde_json::Map::new();
    for d in crate::domain::events::catalogue() {
        let body = serde_json::json!({
            "type": "object",
            "required": ["id", "type", "created_at", "data"],
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "The event's id, also sent as `webhook-id`"},
                "type": {"type": "string", "const": d.event_type},
                "created_at": {"type": "string", "format": "date-time"},
                "data": {"$ref": format!("#/components/schemas/{}", d.schema)}
            }
        });
        hooks.insert(
            d.event_type.to_owned(),
            serde_json::json!({"post": {
                "tags": ["Webhooks"],
                "summary": d.summary,
                "description": format!("Sent to every enabled endpoint that subscribed to `{}` (or to every type). \
                    Verify the signature with any Standard Webhooks library and the endpoint's `whsec_` secret; answer \
                    2xx within 15 s, anything else is retried for about three days.", d.event_type),
                "operationId": format!("webhook_{}", d.event_type.replace('.', "_")),
                "parameters": [
                    header("webhook-id", "The event id; the same on every retry"),
                    header("webhook-timestamp", "Seconds since the Unix epoch when this attempt was signed"),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">`, space-separated when several secrets sign"),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                "responses": {"2XX": {"description": "Received"}}
            }}),
        );
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("webhooks".into(), serde_json::Value::Object(hooks));
    }
    let inputs = request_schemas(&doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|v| v.as_object_mut()) {
        schemas.values_mut().for_each(required_means_not_null);
        for (name, schema) in schemas.iter_mut() {
            if inputs.contains(name) {
                text_rules(name, schema);
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for (path, ops) in paths.iter_mut() {
            let Some(ops) = ops.as_object_mut() else { continue };
            for (method, op) in ops.iter_mut() {
                common_answers(path, method, op);
                if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                    for p in params {
                        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
                        if let Some(values) = query_enum(path, &name) {
                            p["schema"] = serde_json::json!({"type": "string", "enum": values});
                        }
                    }
                }
                let Some(media) =
                    op.pointer_mut("/requestBody/content/application~1json").and_then(|m| m.as_object_mut())
                else {
                    continue;
                };
                if let Some(example) = super::examples::request_body(method, path) {
                    media.insert("example".into(), example);
                } else if let Some(named) = super::examples::request_examples(method, path) {
                    let examples: serde_json::Map<String, serde_json::Value> = named
                        .into_iter()
                        .map(|(name, summary, value)| {
                            (name.to_owned(), serde_json::json!({"summary": summary, "value": value}))
                        })
                        .collect();
                    media.insert("examples".into(), serde_json::Value::Object(examples));
                }
            }
        }
    }
    doc
}

/// The values a list's `state`/`status` filter takes, as the handlers check them.
fn query_enum(path: &str, name: &str) -> Option<&'static [&'static str]> {
    match (path, name) {
        ("/v1/disputes" | "/admin/v1/disputes", "state") => Some(&super::disputes::STATES),
        ("/admin/v1/support-requests", "state") => Some(&super::documents::SUPPORT_STATES),
        ("/admin/v1/payment-claims", "state") => Some(&super::documents::CLAIM_STATES),
        ("/admin/v1/unmatched-returns", "state") => Some(&super::payments::RETURN_STATES),
        ("/admin/v1/messages" | "/v1/sandbox/messages" | "/v1/sandbox/mailbox", "status") => {
            Some(&super::messages::STATUSES)
        }
        _ => None,
    }
}

/// The answers every operation of a kind gives, added to what its handler documents: the
/// middleware's (authentication, throttling, body limits, idempotency) and the extractors'.
fn common_answers(path: &str, method: &str, op: &mut serde_json::Value) {
    let authed = op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    let has_query = op
        .get("parameters")
        .and_then(|p| p.as_array())
        .is_some_and(|ps| ps.iter().any(|p| p.get("in").and_then(|i| i.as_str()) == Some("query")));
    let has_body = op.get("requestBody").is_some();
    let keyed = method == "post" && path.starts_with("/v1/");
    let mut add: Vec<(&str, &str)> = Vec::new();
    if authed {
        add.push(("401", "Missing or invalid credentials (`unauthorized`)"));
        add.push(("429", "Too many failed authentications from this client (`rate_limited`, see `Retry-After`)"));
    }
    if path.starts_with("/checkout-api/") {
        add.push(("429", "Too many calls for this session or from this client (`rate_limited`, see `Retry-After`)"));
        if method == "post" {
            add.push(("403", "Called from an origin the session does not allow (`forbidden`)"));
        }
    }
    let has_limit = op
        .get("parameters")
        .and_then(|p| p.as_array())
        .is_some_and(|ps| ps.iter().any(|p| p.get("name").and_then(|n| n.as_str()) == Some("limit")));
    if has_limit {
        add.push(("422", "`limit` out of 1–100 (`request_validation_error`)"));
    }
    if has_query || has_body || keyed {
        add.push((
            "400",
            "Unreadable request: malformed JSON, wrong types, text after the JSON object, \
            control characters in the query, a malformed `Idempotency-Key` (`request_invalid`)",
        ));
    }
    if has_body {
        add.push(("408", "The body did not arrive within the server's body read timeout (`request_timeout`)"));
        add.push(("413", "Body larger than allowed (`request_too_large`)"));
        add.push(("422", "Readable but invalid: one entry per field (`request_validation_error`)"));
    }
    if keyed {
        add.push(("409", "A request with this `Idempotency-Key` is still running (`idempotency_in_progress`), or a conflict with the resource's state"));
        add.push((
            "422",
            "This `Idempotency-Key` was used with another request (`idempotency_key_reused`), or invalid fields",
        ));
    }
    let error = serde_json::json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
        for (status, description) in add {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| serde_json::json!({"description": description, "content": error.clone()}));
        }
    }
    // Query text as the extractor checks it: no control characters.
    if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
        for p in params.iter_mut().filter(|p| p.get("in").and_then(|i| i.as_str()) == Some("query")) {
            let Some(schema) = p.get_mut("schema").and_then(|s| s.as_object_mut()) else { continue };
            let text = schema
                .get("type")
                .is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a.contains(&"string".into())));
            if text && !schema.contains_key("pattern") && !schema.contains_key("format") && !schema.contains_key("enum")
            {
                schema.insert("pattern".into(), NO_CONTROLS_MULTILINE.into());
            }
        }
    }
    // The key header as the middleware checks it.
    if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
        for p in params.iter_mut().filter(|p| p.get("name").and_then(|n| n.as_str()) == Some("Idempotency-Key")) {
            p["schema"] =
                serde_json::json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"});
        }
    }
}

/// The component schemas a request body can contain (reachable from a `requestBody`).
fn request_schemas(doc: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.trim_start_matches("#/components/schemas/").to_owned());
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for op in paths.values().filter_map(|o| o.as_object()).flat_map(|o| o.values()) {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut todo);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone())
            && let Some(s) = doc.pointer(&format!("/components/schemas/{name}"))
        {
            refs(s, &mut todo);
        }
    }
    seen
}

/// No text field accepts control characters (SPEC §4: C0 but tab and line breaks, DEL, C1) or
/// direction overrides; only the multi-line ones (`MULTILINE_FIELDS`) accept tab and line breaks.
const NO_CONTROLS: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$";
const NO_CONTROLS_MULTILINE: &str =
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$";
/// A required text field also needs something besides white space (it is trimmed).
const NOT_BLANK: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*\
    [^\\s\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069][^\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$";
const NOT_BLANK_MULTILINE: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*\
    [^\\s\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]\
    [^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$";

/// The text rules the server applies to an input schema's string fields, written into it:
/// no control characters, required text not blank, and the two closed vocabularies (`locale`,
/// `salutation`) as enums.
fn text_rules(schema_name: &str, schema: &mut serde_json::Value) {
    let required = required_fields(schema);
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { return };
    for (name, p) in props.iter_mut() {
        let Some(p) = p.as_object_mut() else { continue };
        let types = match p.get("type") {
            Some(serde_json::Value::String(t)) => vec![t.clone()],
            Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => continue,
        };
        if name == "countries" && types.iter().any(|t| t == "array") {
            p.insert("items".into(), serde_json::json!({"type": "string", "enum": crate::domain::validate::COUNTRIES}));
            continue;
        }
        if types.iter().any(|t| t == "integer") {
            if let Some((min, max)) = integer_range(schema_name, name) {
                p.entry("minimum").or_insert(min.into());
                if let Some(max) = max {
                    p.entry("maximum").or_insert(max.into());
                }
            }
            continue;
        }
        if !types.iter().any(|t| t == "string") {
            continue;
        }
        match name.as_str() {
            "locale" => {
                p.insert("enum".into(), serde_json::json!(["de", "en", null]));
                continue;
            }
            "salutation" => {
                p.insert("enum".into(), serde_json::json!(["m", "f", null]));
                continue;
            }
            "country" => {
                let mut codes = serde_json::json!(crate::domain::validate::COUNTRIES);
                if let Some(list) = codes.as_array_mut().filter(|_| !required.contains(name)) {
                    list.push(serde_json::Value::Null);
                }
                p.insert("enum".into(), codes);
                continue;
            }
            "email" => {
                p.insert("format".into(), "email".into());
            }
            _ => {}
        }
        if let Some(max) = max_length(schema_name, name) {
            p.entry("maxLength").or_insert(max.into());
        }
        if p.contains_key("pattern") || p.contains_key("format") || p.contains_key("enum") {
            continue;
        }
        let multiline = crate::domain::validate::MULTILINE_FIELDS.contains(&name.as_str());
        let rule = match (required.contains(name), multiline) {
            (true, false) => NOT_BLANK,
            (true, true) => NOT_BLANK_MULTILINE,
            (false, false) => NO_CONTROLS,
            (false, true) => NO_CONTROLS_MULTILINE,
        };
        p.insert("pattern".into(), rule.into());
    }
}

/// The range the server accepts for an input's integer field, where it checks one.
fn integer_range(schema: &str, field: &str) -> Option<(i64, Option<i64>)> {
    Some(match (schema, field) {
        ("FeeBand", "max_duration") => (1, Some(120)),
        ("AdvanceInput", "days") => (1, Some(crate::service::clock::MAX_ADVANCE_DAYS)),
        (_, "decline_at_dunning_level") => (1, Some(9)),
        ("BaseRateInput", "rate_bps") => (-1_000, Some(2_000)),
        (_, "fee_rate_bps") => (0, Some(10_000)),
        (_, "duration" | "min_duration" | "max_duration" | "default_duration") => (7, Some(120)),
        (_, "quantity") => (1, Some(1_000_000)),
        ("AmountInput", "tax") => (0, None),
        (_, "min_order_amount") => (1, None),
        (
            _,
            "fee_fixed"
            | "credit_limit"
            | "default_buyer_limit"
            | "review_above"
            | "max_order_amount"
            | "merchant_limit"
            | "psp_limit",
        ) => (0, None),
        (_, "amount") if schema == "ConfirmPaymentInput" => (1, None),
        _ => return None,
    })
}

/// The longest text the server accepts in an input field (the `Violations::text` limits).
fn max_length(schema: &str, field: &str) -> Option<u64> {
    Some(match (schema, field) {
        ("EndpointInput", "description") => 255,
        (_, "legal_form") => 10,
        (_, "registration_number") => 100,
        (_, "tax_id" | "postal_code") => 20,
        (_, "phone") => 21,
        (_, "house_number") => 50,
        (_, "iban") => 64,
        (_, "email") => 254,
        (_, "description" | "reason") => 1000,
        (_, "url" | "website" | "invoice_url" | "accept_url" | "decline_url" | "cancel_url") => 2048,
        (
            _,
            "name"
            | "registration_court"
            | "merchant_customer_id"
            | "first_name"
            | "last_name"
            | "external_id"
            | "title"
            | "external_order_id"
            | "comment"
            | "street"
            | "addition"
            | "city"
            | "industry_sector"
            | "external_invoice_number"
            | "external_credit_note_number"
            | "external_payment_id",
        ) => 255,
        _ => return None,
    })
}

/// The names a schema lists as `required`.
fn required_fields(schema: &serde_json::Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Input fields are `Option`s so that a missing one is reported as a 422 naming it, not a serde
/// error; utoipa then documents required fields as nullable. A required field is never null
/// (null is refused like absence), so the document says so.
fn required_means_not_null(schema: &mut serde_json::Value) {
    let required = required_fields(schema);
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { return };
    for name in required {
        let Some(p) = props.get_mut(&name).and_then(|p| p.as_object_mut()) else { continue };
        if let Some(types) = p.get_mut("type").and_then(|t| t.as_array_mut()) {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                p.insert("type".into(), only);
            }
        }
        let inner = p.get("oneOf").and_then(|o| o.as_array()).and_then(|alts| {
            let rest: Vec<&serde_json::Value> = alts.iter().filter(|a| a.get("type") != Some(&"null".into())).collect();
            (rest.len() == 1 && rest.len() < alts.len()).then(|| rest[0].clone())
        });
        if let Some(serde_json::Value::Object(inner)) = inner {
            p.remove("oneOf");
            for (k, v) in inner {
                p.entry(k).or_insert(v);
            }
        }
    }
}

/// The OpenAPI document as committed to the repository (pretty JSON with a final newline).
pub fn openapi_pretty() -> String {
    let mut s = serde_json::to_string_pretty(&openapi_value()).unwrap_or_default();
    s.push('\n');
    s
}
