//! `/docs`: a readable API reference rendered on the server from the generated OpenAPI document,
//! so it ships with the binary and needs no third-party assets.

use maud::{Markup, html};
use serde_json::Value;

use super::pages::page;

fn schema_type(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    if let Some(one) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
        return one.iter().map(schema_type).collect::<Vec<_>>().join(" | ");
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => "object".into(),
    };
    if ty.starts_with("array") {
        if let Some(items) = s.get("items") {
            return format!("array of {}", schema_type(items));
        }
    }
    match s.get("format").and_then(Value::as_str) {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

fn anchor(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn type_link(s: &Value) -> Markup {
    let t = schema_type(s);
    let target = s.get("$ref").or_else(|| s.get("items").and_then(|i| i.get("$ref"))).and_then(Value::as_str);
    match target {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or(r);
            html! { a href=(format!("#schema-{}", anchor(name))) { code { (t) } } }
        }
        None => html! { code { (t) } },
    }
}

/// Renders the whole reference page from the OpenAPI document.
pub fn render(spec: &Value) -> Markup {
    let info = &spec["info"];
    let empty = serde_json::Map::new();
    let paths = spec["paths"].as_object().unwrap_or(&empty);
    let schemas = spec["components"]["schemas"].as_object().unwrap_or(&empty);
    page(
        "API reference",
        html! {
            h1 { (info["title"].as_str().unwrap_or("netterms")) " API " small { (info["version"].as_str().unwrap_or("")) } }
            @if let Some(d) = info["description"].as_str() { p { (d) } }
            p { "Machine-readable: " a href="/openapi.json" { "/openapi.json" } " (OpenAPI 3.1)." }
            h2 { "Operations" }
            @for (path, item) in paths {
                @for (method, op) in item.as_object().unwrap_or(&empty) {
                    section id=(anchor(&format!("{method}{path}"))) {
                        h3 { code { (method.to_uppercase()) " " (path) } }
                        @if let Some(s) = op["summary"].as_str() { p { strong { (s) } } }
                        @if let Some(d) = op["description"].as_str() { p { (d) } }
                        @if let Some(params) = op["parameters"].as_array() {
                            h4 { "Parameters" }
                            ul { @for p in params {
                                li { code { (p["name"].as_str().unwrap_or("")) } " (" (p["in"].as_str().unwrap_or("")) ")"
                                    @if p["required"].as_bool() == Some(true) { " required" }
                                    @if let Some(d) = p["description"].as_str() { " — " (d) } }
                            } }
                        }
                        @if let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
                            h4 { "Request body" }
                            p { (type_link(&Value::Object(schema.clone()))) }
                        }
                        h4 { "Responses" }
                        ul { @for (code, r) in op["responses"].as_object().unwrap_or(&empty) {
                            li { strong { (code) } " " (r["description"].as_str().unwrap_or(""))
                                @if let Some(s) = r["content"]["application/json"]["schema"].as_object() {
                                    " → " (type_link(&Value::Object(s.clone())))
                                } }
                        } }
                    }
                }
            }
            h2 { "Schemas" }
            @for (name, s) in schemas {
                section id=(format!("schema-{}", anchor(name))) {
                    h3 { code { (name) } }
                    @if let Some(d) = s["description"].as_str() { p { (d) } }
                    @if let Some(props) = s["properties"].as_object() {
                        ul { @for (prop, ps) in props {
                            li { code { (prop) } ": " (type_link(ps))
                                @if s["required"].as_array().is_some_and(|r| r.iter().any(|x| x.as_str() == Some(prop))) { " required" }
                                @if let Some(d) = ps["description"].as_str() { " — " (d) } }
                        } }
                    }
                    @if let Some(values) = s["enum"].as_array() {
                        p { "One of: " @for v in values { code { (v.as_str().unwrap_or("")) } " " } }
                    }
                }
            }
        },
    )
}
