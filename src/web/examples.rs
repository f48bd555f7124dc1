//! A request body example for every operation that takes one, in the OpenAPI document and so in
//! the reference page's console. Ids are placeholders (`EXAMPLE_*`) that a reader replaces with
//! their own; a test sends every example, with real ids put in, and expects it accepted.

use serde_json::{Value, json};

/// Placeholder ids used in the examples' bodies.
pub const EXAMPLE_MERCHANT_ID: &str = "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
pub const EXAMPLE_CAPTURE_ID: &str = "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a7c";
/// The placeholder end-to-end id of a collection in examples.
pub const EXAMPLE_END_TO_END_ID: &str = "NT6C1F0E3B2A4D5E6F708192A3B4C5D6E";

fn amount(gross: i64) -> Value {
    let tax = gross * 19 / 119;
    json!({"currency": "EUR", "gross": gross, "net": gross - tax, "tax": tax})
}

/// The order data of the checkout examples (the widget's `mount` and the confirmation use the same).
pub fn order_data() -> Value {
    json!({
        "external_order_id": "SO-2026-1001",
        "amount": amount(11900),
        "duration": 30,
        "debtor_company": {
            "name": "Kunde Maschinenbau GmbH", "legal_form": "10001",
            "registration_number": "HRB 54321", "registration_court": "Amtsgericht München",
            "address": {"street": "Leopoldstraße", "house_number": "10", "postal_code": "80802",
                        "city": "München", "country": "DE"}
        },
        "debtor_person": {"salutation": "f", "first_name": "Anna", "last_name": "Einkauf",
                          "email": "anna@kunde.example", "phone": "+49 89 1234567"},
        "delivery_address": {"street": "Werkstraße", "house_number": "5", "postal_code": "85748",
                             "city": "Garching", "country": "DE"},
        "line_items": [
            {"external_id": "sku-1", "title": "Drehmaschine DM-200", "quantity": 1, "amount": amount(9520)},
            {"external_id": "sku-2", "title": "Spannfutter", "quantity": 2, "amount": amount(2380)}
        ]
    })
}

/// Named example bodies of an operation whose body depends on the kind of object it is called on
/// (each must be accepted by that kind): `(name, summary, body)`.
pub fn request_examples(method: &str, path: &str) -> Option<Vec<(&'static str, &'static str, Value)>> {
    match (method, path) {
        ("post", "/checkout-api/v1/sessions/{client_secret}/authorize") => Some(vec![
            (
                "widget",
                "A widget session: the widget sends the order as the shop's page holds it",
                json!({"order": order_data(), "payment_method": "bank_transfer", "terms_accepted": true, "locale": "de"}),
            ),
            (
                "payment_page",
                "A payment-page session: the order is the session's; sending one is refused",
                json!({"payment_method": "bank_transfer", "terms_accepted": true, "locale": "de"}),
            ),
        ]),
        _ => None,
    }
}

/// The example body of `method path`, if the operation takes one.
pub fn request_body(method: &str, path: &str) -> Option<Value> {
    Some(match (method, path) {
        ("post", "/v1/merchants") => json!({
            "external_id": "merchant-4711",
            "name": "Werkzeug & Co. GmbH",
            "legal_form": "10001",
            "registration_number": "HRB 12345",
            "registration_court": "Amtsgericht Charlottenburg",
            "tax_id": "DE123456789",
            "address": {"street": "Friedrichstraße", "house_number": "123", "postal_code": "10117",
                        "city": "Berlin", "country": "DE"},
            "website": "https://werkzeug.example",
            "industry_sector": "G",
            "contact": {"name": "Erika Mustermann", "email": "erika@werkzeug.example", "phone": "+49 30 1234567"},
            "payment_terms": {"min_duration": 14, "max_duration": 90, "default_duration": 30}
        }),
        ("post", "/v1/payment-page-sessions") => json!({
            "merchant_id": EXAMPLE_MERCHANT_ID,
            "order": order_data(),
            "redirect_urls": {"accept_url": "https://werkzeug.example/checkout/accepted",
                              "decline_url": "https://werkzeug.example/checkout/declined",
                              "cancel_url": "https://werkzeug.example/checkout"},
            "locale": "de"
        }),
        ("post", "/v1/widget-sessions") => json!({
            "merchant_id": EXAMPLE_MERCHANT_ID,
            "merchant_customer_id": "customer-815",
            "allowed_origins": ["https://werkzeug.example"]
        }),
        ("post", "/v1/widget-sessions/{session_id}/confirm-authorization") => order_data(),
        // Two kinds of session, two bodies: see `request_examples`.
        ("post", "/checkout-api/v1/sessions/{client_secret}/authorize") => return None,
        ("patch", "/v1/orders/{order_id}") => json!({"duration": 45}),
        ("post", "/v1/orders/{order_id}/captures") => json!({
            "amount": amount(9520),
            "external_invoice_number": "INV-2026-0042",
            "invoice_url": "https://werkzeug.example/invoices/INV-2026-0042.pdf",
            "shipping_info": {"carrier": "DHL", "tracking_number": "00340434161094042557"},
            "line_items": [{"external_id": "sku-1", "title": "Drehmaschine DM-200", "quantity": 1, "amount": amount(9520)}]
        }),
        ("post", "/v1/captures/{capture_id}/extend-duration") => json!({"duration": 60}),
        ("post", "/v1/captures/{capture_id}/refunds") => json!({
            "amount": amount(1190),
            "external_credit_note_number": "CN-2026-0007",
            "reason": "Transport damage on the housing",
            "line_items": [{"external_id": "sku-1-damage", "title": "Credit for transport damage", "quantity": 1,
                            "amount": amount(1190)}]
        }),
        ("post", "/v1/captures/{capture_id}/confirm-payment") => json!({
            "amount": 2000,
            "external_payment_id": "PAY-2026-0815"
        }),
        ("post", "/v1/sandbox/clock/advance") => json!({"days": 30}),
        ("post", "/v1/sandbox/payments") => json!({
            "iban": "DE89370400440532013000",
            "amount": {"currency": "EUR", "value": 11900},
            "reference": "RF18 5390 0754 7034",
            "debtor_name": "Kunde Maschinenbau GmbH"
        }),
        ("post", "/v1/sandbox/direct-debit-returns") => {
            json!({"capture_id": EXAMPLE_CAPTURE_ID, "reason_code": "AM04"})
        }
        ("post", "/v1/sandbox/disputes") => json!({
            "capture_id": EXAMPLE_CAPTURE_ID,
            "reason_code": "faulty_goods",
            "amount": 5950,
            "description": "Fünf der zehn Bohrmaschinen kamen defekt an."
        }),
        ("post", "/admin/v1/disputes") => json!({
            "capture_id": EXAMPLE_CAPTURE_ID,
            "reason_code": "goods_not_received",
            "description": "Der Käufer sagt, die Lieferung sei nie angekommen.",
            "deadline_days": 14
        }),
        ("post", "/v1/disputes/{dispute_id}/defend") => json!({
            "reason": "Zugestellt am 3. März, unterschrieben von M. Weber; Lieferschein und Zustellnachweis anbei.",
            "documents": [{
                "name": "zustellnachweis.pdf",
                "content_type": "application/pdf",
                "content": "JVBERi0xLjQKMSAwIG9iaiA8PC9UeXBlIC9DYXRhbG9nPj4gZW5kb2JqCnRyYWlsZXIgPDwvUm9vdCAxIDAgUj4+CiUlRU9GCg=="
            }]
        }),
        ("post", "/admin/v1/disputes/{dispute_id}/close") => json!({"result": "resolved"}),
        ("post", "/admin/v1/support-requests/{support_request_id}/answer") => json!({
            "text": "Guten Tag, anbei die Rechnungskopie. Die Zahlung ist am 12. März eingegangen."
        }),
        ("post", "/admin/v1/unmatched-payments/{payment_id}/assign") => json!({"capture_id": EXAMPLE_CAPTURE_ID}),
        ("post", "/admin/v1/buyers/{buyer_id}/credit-refunds") => {
            json!({"amount": 4100, "iban": "DE89 3704 0044 0532 0130 00", "name": "Kunde Maschinenbau GmbH"})
        }
        ("post", "/admin/v1/unmatched-returns/{unmatched_return_id}/apply") => {
            json!({"end_to_end_id": EXAMPLE_END_TO_END_ID})
        }
        ("post", "/admin/v1/unmatched-returns/{unmatched_return_id}/dismiss") => {
            json!({"reason": "A return of another creditor's debit; the bank will correct it"})
        }
        ("post", "/admin/v1/unmatched-payments/{payment_id}/refund") => json!({
            "iban": "DE89 3704 0044 0532 0130 00",
            "name": "Kunde Maschinenbau GmbH"
        }),
        ("post", "/v1/webhook-endpoints") => json!({
            "url": "https://psp.example/webhooks/netterms",
            "event_types": ["authorization", "order.created", "capture.created", "capture.paid"],
            "description": "Order and invoice events"
        }),
        ("post", "/admin/v1/approvals/{approval_id}/approve") => json!({"reason": "checked against the bank's advice"}),
        ("post", "/admin/v1/approvals/{approval_id}/reject") => json!({"reason": "the PSP asked us to wait"}),
        ("patch", "/admin/v1/operators/{operator_id}") => json!({"roles": ["read_only"]}),
        ("post", "/admin/v1/operators") => json!({
            "email": "rita.risk@netterms.example",
            "name": "Rita Risk",
            "roles": ["risk"]
        }),
        ("post", "/admin/v1/psps") => json!({
            "name": "Example Payments GmbH",
            "fee_rate_bps": 150,
            "fee_fixed": 25,
            "iban": "DE89 3704 0044 0532 0130 00",
            "payout_frequency": "weekly",
            "fee_bands": [{"max_duration": 30, "fee_rate_bps": 120}, {"max_duration": 120, "fee_rate_bps": 180}],
            "billing": {"street": "Zahlweg 5", "postal_code": "60311", "city": "Frankfurt am Main", "country": "DE",
                        "vat_id": "DE987654321", "email": "buchhaltung@psp.example"}
        }),
        ("patch", "/admin/v1/psps/{psp_id}") => json!({"fee_rate_bps": 140, "payout_frequency": "daily"}),
        ("put", "/admin/v1/credit-policy") => json!({
            "default_buyer_limit": 5_000_000,
            "review_above": 2_500_000,
            "min_order_amount": 100,
            "max_order_amount": 10_000_000,
            "countries": ["DE", "AT", "NL"],
            "merchant_limit": null,
            "psp_limit": null,
            "decline_at_dunning_level": 2
        }),
        ("put", "/admin/v1/dunning-policy") => {
            serde_json::to_value(crate::domain::dunning::Policy::default()).unwrap_or_default()
        }
        ("put", "/admin/v1/base-rates/{valid_from}") => json!({
            "rate_bps": 127,
            "source": "Deutsche Bundesbank, Basiszinssatz ab 1. Juli 2026"
        }),
        ("post", "/admin/v1/captures/{capture_id}/dunning/pause") => json!({
            "reason": "The buyer says the goods arrived damaged; the merchant is checking",
            "until": "2027-03-31T00:00:00Z"
        }),
        ("post", "/admin/v1/captures/{capture_id}/dunning/resume") => json!({
            "reason": "The merchant confirmed delivery was complete"
        }),
        ("patch", "/admin/v1/buyers/{buyer_id}") => json!({"credit_limit": 2_000_000, "blocked": false}),
        _ => return None,
    })
}
